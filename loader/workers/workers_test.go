package workers

import (
	"context"
	"log/slog"
	"testing"

	"github.com/loaderd/loaderd/gpu"
)

// TestStreamsFirst puts a background task and a stream task in front of a
// worker at once: the stream task runs first.
func TestStreamsFirst(t *testing.T) {
	s := New(gpu.Place(nil, 1), 1, false, slog.New(slog.DiscardHandler))
	p := s.pools[s.def]
	// Queues with room, so both tasks wait before the worker starts.
	p.high, p.low = make(chan Task, 1), make(chan Task, 1)
	s.low = p.low
	order := make(chan string, 2)
	p.low <- func() { order <- "background" }
	p.high <- func() { order <- "stream" }
	if !s.start() {
		t.Fatal("scheduler did not start")
	}
	first, second := <-order, <-order
	s.Stop()
	if first != "stream" || second != "background" {
		t.Fatalf("ran %s then %s; want stream then background", first, second)
	}
	if s.Submit(context.Background(), -1, true, func() {}) {
		t.Fatal("submit after stop succeeded")
	}
}

// TestSubmitCancelled returns false without running the task when the
// context ends before a worker is free.
func TestSubmitCancelled(t *testing.T) {
	s := New(gpu.Place(nil, 1), 1, false, slog.New(slog.DiscardHandler))
	defer s.Stop()
	block, running := make(chan struct{}), make(chan struct{})
	if !s.Submit(context.Background(), -1, true, func() { close(running); <-block }) {
		t.Fatal("first submit failed")
	}
	<-running // the only worker is busy
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if s.Submit(ctx, -1, false, func() { ran = true }) {
		t.Fatal("submit with a cancelled context succeeded")
	}
	close(block)
	if ran {
		t.Fatal("the refused task ran")
	}
}
