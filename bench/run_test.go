package bench

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tinyOptions run every phase in a few seconds: 12 generated images, small
// transfers, the fake peer.
func tinyOptions(t *testing.T) *Options {
	t.Helper()
	script, err := filepath.Abs("testdata/fakepeer.sh")
	if err != nil {
		t.Fatal(err)
	}
	return &Options{
		MaxImages: 12, MaxWorkers: 2, Repeat: 2, Epochs: 2, Clients: []int{1, 2},
		Peer: "torchvision", PeerPython: "/bin/sh", PeerScript: script,
		TransferBytes: 8 << 20, BatchSize: 4, OutDir: t.TempDir(),
	}
}

func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := tinyOptions(t)
	var progress strings.Builder
	o.Progress = &progress
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	if len(r.Cold) != 2 || len(r.Precompute) != 2 || len(r.Warm) != 2 || len(r.Peer) != 3 || r.PeerError != "" {
		t.Fatalf("Run: %d cold, %d precompute, %d warm, %d peer points, peer error %q; want 2, 2, 2, 3, none",
			len(r.Cold), len(r.Precompute), len(r.Warm), len(r.Peer), r.PeerError)
	}
	for _, p := range append(append(append([]Point(nil), r.Cold...), r.Precompute...), r.Warm...) {
		if p.ImagesPerSec <= 0 || p.Min > p.ImagesPerSec || p.ImagesPerSec > p.Max || len(p.Runs) != 2 || p.Images <= 0 {
			t.Errorf("point %+v: want a positive median within [min, max] of 2 runs", p)
		}
	}
	if r.Precompute[0].Epochs != 1 || r.Precompute[1].Epochs != 2 || r.Precompute[1].Images != 2*12 {
		t.Errorf("precompute points %+v; want 1 epoch then 2 fused epochs of 12 images", r.Precompute)
	}
	for _, p := range r.Warm {
		// Rank k of world size c: the clients together read one epoch per pass.
		if p.GBPerSec <= 0 || p.Bytes < p.Images*int64(r.Dataset.RowBytes) || p.Images%12 != 0 {
			t.Errorf("warm point %+v: want whole epochs of %d-byte rows", p, r.Dataset.RowBytes)
		}
	}
	if r.Dataset.Images != 12 || r.Dataset.Source != "generated" || r.Dataset.BytesPerPixel <= 0 {
		t.Errorf("dataset %+v; want 12 generated images", r.Dataset)
	}
	checkJSON(t, r.JSONPath, true)
	checkPNG(t, r.PlotPath)

	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("progress:\n%s\n%s", progress.String(), table.String())
	for _, want := range []string{"loaderd/peer", "served/loopback", "TCP)", "(W=0)", "memcpy"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if len(r.Ratios.Peer) != 3 || len(r.Ratios.Served) != 2 || r.Ratios.Peer[0].Workers != 1 {
		t.Errorf("ratios %+v; want 3 peer ratios (W=0 against 1 worker) and 2 served ratios", r.Ratios)
	}
}

func TestRunPeerUnavailable(t *testing.T) {
	o := tinyOptions(t)
	o.PeerPython = filepath.Join(t.TempDir(), "no-python")
	o.Clients, o.MaxWorkers, o.Repeat, o.Epochs, o.MaxImages = []int{1}, 1, 1, 1, 4
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run with no python: %v; want the peer reported unavailable", err)
	}
	if r.PeerError == "" || len(r.Peer) != 0 {
		t.Fatalf("PeerError %q, peer %+v; want an error and no points", r.PeerError, r.Peer)
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil || !strings.Contains(table.String(), "peer unavailable") {
		t.Fatalf("table (%v) lacks the peer's absence:\n%s", err, table.String())
	}
}

func TestRunRejects(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "unknown peer", opts: Options{Peer: "dali"}},
		{name: "zero clients", opts: Options{Clients: []int{1, 0}}},
		{name: "bad pipeline", opts: Options{Pipeline: "no_such_op(x=1)"}},
		{name: "missing dataset", opts: Options{Data: "/nonexistent/dataset"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Run(context.Background(), &tc.opts); err == nil {
				t.Fatal("Run: nil error")
			}
		})
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, tinyOptions(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled ctx: %v, want context.Canceled", err)
	}
}

// cancelOn cancels when a progress line contains trigger.
type cancelOn struct {
	trigger string
	cancel  context.CancelFunc
}

func (c *cancelOn) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.trigger) {
		c.cancel()
	}
	return len(p), nil
}

func TestRunCancelledMidway(t *testing.T) {
	tests := []struct {
		name    string
		trigger string
	}{
		{name: "during cold", trigger: "cold: workers=1"},
		{name: "during precompute", trigger: "precompute: epochs=1"},
		{name: "during warm", trigger: "warm: clients=1"},
		{name: "during peer", trigger: "peer: num_workers 0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			o := tinyOptions(t)
			o.Progress = &cancelOn{trigger: tc.trigger, cancel: cancel}
			start := time.Now()
			_, err := Run(ctx, o)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run cancelled on %q: %v, want context.Canceled", tc.trigger, err)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Fatalf("Run took %v to stop", d)
			}
		})
	}
}

func TestRunPeerTimeout(t *testing.T) {
	o := tinyOptions(t)
	o.Clients, o.MaxWorkers, o.Repeat, o.Epochs, o.MaxImages = []int{1}, 1, 1, 1, 4
	script, err := filepath.Abs("testdata/slowpeer.sh")
	if err != nil {
		t.Fatal(err)
	}
	o.PeerScript, o.PeerTimeout = script, 200*time.Millisecond
	start := time.Now()
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v; want the peer's timeout reported, not returned", err)
	}
	if !strings.Contains(r.PeerError, "timed out") || time.Since(start) > 30*time.Second {
		t.Fatalf("PeerError %q after %v; want a prompt timeout", r.PeerError, time.Since(start))
	}
}
