package loader

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/loaderd/loaderd/gpu"
	"github.com/loaderd/loaderd/service"
)

// TestSchedulerStreamsFirst puts a background task and a stream task in
// front of a worker at once: the stream task runs first.
func TestSchedulerStreamsFirst(t *testing.T) {
	s := newScheduler(gpu.Place(nil, 1), 1, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	p := s.pools[s.def]
	// Queues with room, so both tasks wait before the worker starts.
	p.high, p.low = make(chan task, 1), make(chan task, 1)
	s.low = p.low
	order := make(chan string, 2)
	p.low <- func() { order <- "background" }
	p.high <- func() { order <- "stream" }
	if !s.start() {
		t.Fatal("scheduler did not start")
	}
	first, second := <-order, <-order
	s.stop()
	if first != "stream" || second != "background" {
		t.Fatalf("ran %s then %s; want stream then background", first, second)
	}
	if s.submit(context.Background(), -1, true, func() {}) {
		t.Fatal("submit after stop succeeded")
	}
}

// TestCloseDuringStream closes the loader while a cold stream runs: the
// stream ends with ErrUnavailable instead of hanging.
func TestCloseDuringStream(t *testing.T) {
	root := fxDataset(t, 60)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	sent := 0
	err := l.Stream(context.Background(), fxReq(func(r *service.Request) { r.BatchSize = 3 }), func(b *service.Batch) error {
		b.Release()
		if sent++; sent == 2 {
			l.Close()
		}
		return nil
	})
	if !errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("stream across Close = %v after %d batches, want ErrUnavailable", err, sent)
	}
}
