package flightsvc

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/loaderd/loaderd/service"
)

// BenchmarkDoGet measures DoGet throughput on loopback with 256-row batches
// of pre-made 224×224×3 rows, and a raw TCP loopback copy of the same bytes
// in the same run for comparison. cpu-s/GB is the CPU time of the process
// (server and client, user and system) per GB moved: unlike GB/s it holds
// on a busy machine.
func BenchmarkDoGet(b *testing.B) {
	const (
		batch   = 256
		batches = 4
		side    = 224
	)
	f := newFakeSource(b, batch*batches, side, side)
	f.rows = make([][]byte, 64)
	for i := range f.rows {
		f.rows[i] = make([]byte, side*side*3)
		for j := range f.rows[i] {
			f.rows[i][j] = byte(i + j)
		}
	}
	req := service.Request{Dataset: "train", BatchSize: batch, WorldSize: 1}

	b.Run("flight", func(b *testing.B) {
		s, err := New(&Options{Source: f})
		if err != nil {
			b.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, lis) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				b.Error(err)
			}
		}()
		cl, err := Dial(ctx, lis.Addr().String(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		var bytes, rows int64
		cpu0 := cpuTime(b)
		for b.Loop() {
			st, err := cl.Fetch(ctx, req, nil)
			if err != nil {
				b.Fatal(err)
			}
			bytes += st.Bytes
			rows += st.Rows
		}
		b.SetBytes(bytes / int64(b.N))
		b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e9, "GB/s")
		b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "images/s")
		b.ReportMetric((cpuTime(b)-cpu0).Seconds()/(float64(bytes)/1e9), "cpu-s/GB")
	})

	b.Run("tcp", func(b *testing.B) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer lis.Close()
		perIter := int64(batch * batches * side * side * 3)
		done := make(chan error, 1)
		go func() {
			conn, err := lis.Accept()
			if err != nil {
				done <- err
				return
			}
			defer conn.Close()
			_, err = io.Copy(io.Discard, conn)
			done <- err
		}()
		conn, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		var bytes int64
		cpu0 := cpuTime(b)
		for b.Loop() {
			// Write each row as the Source holds it (one write per row).
			for k := range batch * batches {
				n, err := conn.Write(f.rows[k%len(f.rows)])
				if err != nil {
					b.Fatal(err)
				}
				bytes += int64(n)
			}
		}
		conn.Close()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if bytes != perIter*int64(b.N) {
			b.Fatalf("wrote %d bytes; want %d", bytes, perIter*int64(b.N))
		}
		b.SetBytes(perIter)
		b.ReportMetric(float64(bytes)/b.Elapsed().Seconds()/1e9, "GB/s")
		b.ReportMetric(float64(bytes/int64(side*side*3))/b.Elapsed().Seconds(), "images/s")
		b.ReportMetric((cpuTime(b)-cpu0).Seconds()/(float64(bytes)/1e9), "cpu-s/GB")
	})
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
