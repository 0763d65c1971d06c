package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sync/errgroup"
)

const (
	memcpyBuffer  = 64 << 20 // bytes per copy
	loopbackChunk = 1 << 20  // bytes per write on a loopback stream
)

// measureMemcpy copies a 64 MiB buffer into another until total bytes have
// moved, repeat times after one untimed copy, and returns GB/s.
func measureMemcpy(ctx context.Context, total int64, repeat int) (Rate, error) {
	src, dst := make([]byte, memcpyBuffer), make([]byte, memcpyBuffer)
	for i := range src {
		src[i] = byte(i)
	}
	copy(dst, src) // warm-up: fault the pages in
	copies := max(1, int(total/memcpyBuffer))
	runs := make([]float64, 0, repeat)
	for range repeat {
		if err := ctx.Err(); err != nil {
			return Rate{}, fmt.Errorf("bench: memcpy: %w", err)
		}
		start := time.Now()
		for range copies {
			copy(dst, src)
		}
		runs = append(runs, rate(float64(copies*memcpyBuffer)/1e9, time.Since(start)))
	}
	s := summarize(runs)
	return Rate{Streams: 1, GBPerSec: s.Median, Min: s.Min, Max: s.Max, Runs: runs,
		Bytes: int64(copies * memcpyBuffer)}, nil
}

// measureLoopback sends total bytes over each of streams TCP connections on
// 127.0.0.1 at once (a writer and a reader goroutine per connection),
// repeat times after a short warm-up, and returns the aggregate GB/s.
func measureLoopback(ctx context.Context, streams int, total int64, repeat int) (Rate, error) {
	if _, err := loopbackOnce(ctx, streams, min(total, 16<<20)); err != nil { // warm-up
		return Rate{}, err
	}
	runs := make([]float64, 0, repeat)
	for range repeat {
		d, err := loopbackOnce(ctx, streams, total)
		if err != nil {
			return Rate{}, err
		}
		runs = append(runs, rate(float64(total*int64(streams))/1e9, d))
	}
	s := summarize(runs)
	return Rate{Streams: streams, GBPerSec: s.Median, Min: s.Min, Max: s.Max, Runs: runs,
		Bytes: total * int64(streams)}, nil
}

// loopbackOnce moves total bytes over each of streams connections and
// returns the time from the first write to the last byte read.
func loopbackOnce(ctx context.Context, streams int, total int64) (time.Duration, error) {
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: loopback: %w", err)
	}
	defer lis.Close()
	conns := make([]net.Conn, 0, 2*streams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var d net.Dialer
	for range streams {
		w, err := d.DialContext(ctx, "tcp", lis.Addr().String())
		if err != nil {
			return 0, fmt.Errorf("bench: loopback: %w", err)
		}
		conns = append(conns, w)
		r, err := lis.Accept()
		if err != nil {
			return 0, fmt.Errorf("bench: loopback: %w", err)
		}
		conns = append(conns, r)
	}
	g, gctx := errgroup.WithContext(ctx)
	stop := context.AfterFunc(gctx, func() { // cancellation unblocks reads and writes
		for _, c := range conns {
			c.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stop()
	start := time.Now()
	for s := range streams {
		w, r := conns[2*s], conns[2*s+1]
		g.Go(func() error {
			buf := make([]byte, loopbackChunk)
			for sent := int64(0); sent < total; {
				n, err := w.Write(buf[:min(int64(len(buf)), total-sent)])
				sent += int64(n)
				if err != nil {
					return fmt.Errorf("bench: loopback write: %w", err)
				}
			}
			return nil
		})
		g.Go(func() error {
			buf := make([]byte, loopbackChunk)
			for got := int64(0); got < total; {
				n, err := r.Read(buf)
				got += int64(n)
				if errors.Is(err, io.EOF) && got < total {
					return fmt.Errorf("bench: loopback read: %w", io.ErrUnexpectedEOF)
				} else if err != nil && got < total {
					return fmt.Errorf("bench: loopback read: %w", err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("bench: loopback: %w", ctx.Err())
		}
		return 0, err
	}
	return time.Since(start), nil
}

// Loopback measures loopback TCP throughput in this process: streams
// connections on 127.0.0.1 each moving total bytes, repeat times after a
// warm-up (median reported). `loaderd fetch --vs-loopback` uses it to put a
// Flight figure beside the machine's limit in the same run.
func Loopback(ctx context.Context, streams int, total int64, repeat int) (Rate, error) {
	if streams < 1 || total < 1 || repeat < 1 {
		return Rate{}, fmt.Errorf("%w: loopback of %d streams × %d bytes × %d", ErrOptions, streams, total, repeat)
	}
	return measureLoopback(ctx, streams, total, repeat)
}
