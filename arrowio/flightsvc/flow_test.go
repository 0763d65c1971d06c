package flightsvc

import (
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestConnectionDropped: a client that vanishes mid-stream leaves no batch
// unreleased, even those gRPC had queued on the dead connection.
func TestConnectionDropped(t *testing.T) {
	f := newFakeSource(t, 640, 64, 64) // 12 KiB rows, 64-row batches
	addr, _ := startServer(t, &Options{Source: f})
	for range 3 {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		if err != nil {
			t.Fatal(err)
		}
		c := flight.NewClientFromConn(conn, nil)
		ctx := testCtx(t)
		info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":64}`))
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.released.Load() != f.made.Load() && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	waitReleased(t, f)
}

// TestBackPressure: a client that stops reading stops the Source after a
// batch or two; nothing buffers the stream without bound.
func TestBackPressure(t *testing.T) {
	f := newFakeSource(t, 64*100, 64, 64) // 100 batches of 768 KiB
	addr, _ := startServer(t, &Options{Source: f})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := flight.NewClientFromConn(conn, nil)
	ctx := testCtx(t)
	info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":64}`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil { // schema
		t.Fatal(err)
	}
	// Observe the producer for a while without reading: it must stall.
	deadline := time.Now().Add(5 * time.Second)
	for f.made.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	<-time.After(200 * time.Millisecond)
	t.Logf("produced %d batches while the client read none", f.made.Load())
	if m := f.made.Load(); m == 0 || m > 4 {
		t.Fatalf("Source produced %d of 100 batches while the client read none; want 1-4", m)
	}
	n := 0
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		n++
	}
	if n != 100 {
		t.Fatalf("read %d batches; want 100", n)
	}
	waitReleased(t, f)
}
