package flightsvc

import (
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestDrain(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	f.hold = make(chan struct{})
	f.started = make(chan struct{})
	addr, stop := startServer(t, &Options{Source: f, DrainTimeout: time.Minute})
	c := arrowClient(t, addr)
	ctx := testCtx(t)
	info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":2}`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	<-f.started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// New calls are refused while the running stream drains.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train"}`))
		if status.Code(err) == codes.Unavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetFlightInfo while draining = %v; want Unavailable", err)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a stream was running", err)
	default:
	}
	close(f.hold)
	n := 0
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("draining stream ended with %v", err)
			}
			break
		}
		n++
	}
	if n != 6 { // schema + 5 batches
		t.Errorf("drained stream got %d messages; want 6", n)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	waitReleased(t, f)
}

func TestDrainTimeout(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	f.hold = make(chan struct{}) // never closed
	f.started = make(chan struct{})
	f.ctxDone = make(chan struct{})
	addr, stop := startServer(t, &Options{Source: f, DrainTimeout: 50 * time.Millisecond})
	c := arrowClient(t, addr)
	ctx := testCtx(t)
	info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DoGet(ctx, info.Endpoint[0].Ticket); err != nil {
		t.Fatal(err)
	}
	<-f.started
	if err := stop(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	select {
	case <-f.ctxDone:
	default:
		t.Fatal("Serve returned before the running stream was cancelled")
	}
	waitReleased(t, f)
}
