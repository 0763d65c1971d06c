package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tinyOptions run every phase in a few seconds: 12 generated images, small
// transfers, every peer faked by testdata/fakepeer.sh.
func tinyOptions(t *testing.T) *Options {
	t.Helper()
	return &Options{
		MaxImages: 12, MaxWorkers: 2, Repeat: 2, Epochs: 2, Clients: []int{1, 2},
		Peers: PeerNames(), PeerPython: shFor(PeerNames()...), PeerDir: fakePeerDir(t, ""), PeerGPU: new(bool),
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
	if len(r.Cold) != 2 || len(r.Precompute) != 2 || len(r.Warm) != 2 || len(r.Peers) != 3 || r.PeerErr() != nil {
		t.Fatalf("Run: %d cold, %d precompute, %d warm points, %d peers, peer errors %v; want 2, 2, 2, 3, none",
			len(r.Cold), len(r.Precompute), len(r.Warm), len(r.Peers), r.PeerErr())
	}
	// Without a loaderd binary (Options.ServeCommand) the local phase says
	// so; cmd/loaderd's TestBenchCommand runs it.
	if r.Local == nil || !strings.Contains(r.Local.Error, "not measured") {
		t.Errorf("local phase without a server command: %+v", r.Local)
	}
	// dali: 2 variants at 1, 2 workers; tfdata: 1 at 1, 2 and the cache
	// variant at 2; torchvision: 2 at 0, 1, 2.
	for i, want := range []struct {
		name        string
		cold, multi int
	}{{"dali", 4, 0}, {"tfdata", 2, 1}, {"torchvision", 6, 0}} {
		p := r.Peers[i]
		if p.Name != want.name || len(p.Cold) != want.cold || len(p.MultiEpoch) != want.multi || p.Python != "/bin/sh" || len(p.Versions) == 0 {
			t.Errorf("peer %d: %s with %d cold, %d multi-epoch points, python %q, versions %v; want %s with %d, %d",
				i, p.Name, len(p.Cold), len(p.MultiEpoch), p.Python, p.Versions, want.name, want.cold, want.multi)
		}
	}
	if m := r.Peers[1].MultiEpoch; len(m) == 1 && (m[0].Epochs != 2 || m[0].Workers != 2 || m[0].Variant != "cache") {
		t.Errorf("tfdata multi-epoch point %+v; want the cache variant over 2 epochs at 2 workers", m[0])
	}
	for _, p := range append(append(append([]Point(nil), r.Cold...), r.Precompute...), r.Warm...) {
		if p.ImagesPerSec <= 0 || p.Min > p.ImagesPerSec || p.ImagesPerSec > p.Max || len(p.Runs) != 2 || p.Images <= 0 {
			t.Errorf("point %+v: want a positive median within [min, max] of 2 runs", p)
		}
	}
	if r.Precompute[0].Epochs != 1 || r.Precompute[1].Epochs != 2 || r.Precompute[1].Images != 2*12 {
		t.Errorf("precompute points %+v; want 1 epoch then 2 fused epochs of 12 images", r.Precompute)
	}
	for _, p := range r.Precompute {
		if p.CPUCores <= 0 || p.CPUCores > float64(runtime.NumCPU())+0.5 {
			t.Errorf("precompute point %+v: cores %.2f; want the CPU it used, in (0, %d]", p, p.CPUCores, runtime.NumCPU())
		}
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
	for _, want := range []string{"loaderd/peer", "served/loopback", "TCP)", "memcpy", "tfdata crop (W=2)", "tfdata cache (W=2)",
		"peer dali: DALI (CPU); dali fake, python 3 (/bin/sh)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if b, err := os.ReadFile(r.TablePath); err != nil || string(b) != table.String() {
		t.Errorf("%s (%v) is not the table", r.TablePath, err)
	}
	// The best peer at each worker count is tfdata (150 and 300 images/s,
	// medians of 2 repeats: +0.5); the fused epochs meet its cache variant.
	if len(r.Ratios.Peer) != 2 || len(r.Ratios.Served) != 2 {
		t.Fatalf("ratios %+v; want 2 peer ratios and 2 served ratios", r.Ratios)
	}
	for i, pr := range r.Ratios.Peer {
		w := i + 1
		if pr.Workers != w || pr.Peer != "tfdata" || pr.Variant != "crop" || pr.PeerRate != 150*float64(w)+0.5 ||
			pr.Ratio != r.Cold[i].ImagesPerSec/pr.PeerRate || pr.PerCPU <= 0 {
			t.Errorf("peer ratio %+v; want tfdata crop at %d workers, %v images/s", pr, w, 150*float64(w)+0.5)
		}
	}
	if pr := r.Ratios.Precompute; pr == nil || pr.Peer != "tfdata" || pr.Variant != "cache" || pr.PeerRate != 1000.5 {
		t.Errorf("precompute ratio %+v; want tfdata cache at 1000.5 images/s", pr)
	}
	if r.Ratios.WarmOverPeer <= 0 {
		t.Errorf("no warm/peer ratio: %+v", r.Ratios)
	}
}

func TestRunPeerUnavailable(t *testing.T) {
	o := tinyOptions(t)
	o.PeerPython["dali"] = filepath.Join(t.TempDir(), "no-python")
	o.PeerDir = fakePeerDir(t, "testdata/nomodule.sh", "tfdata")
	o.Clients, o.MaxWorkers, o.Repeat, o.Epochs, o.MaxImages = []int{1}, 1, 1, 1, 4
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run with broken peers: %v; want them reported", err)
	}
	if len(r.Peers) != 3 || r.Peers[0].Error == "" || r.Peers[1].Error == "" || r.Peers[2].Error != "" ||
		len(r.Peers[0].Cold) != 0 || len(r.Peers[2].Cold) == 0 {
		t.Fatalf("peers %+v; want dali and tfdata failed, torchvision measured", r.Peers)
	}
	err = r.PeerErr()
	if err == nil || !strings.Contains(err.Error(), "dali: ") || !strings.Contains(err.Error(), "tfdata: ") || !strings.Contains(err.Error(), "No module named") {
		t.Fatalf("PeerErr() = %v; want both failures with their reasons", err)
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil || !strings.Contains(table.String(), "peer dali FAILED") ||
		!strings.Contains(table.String(), "peer tfdata FAILED") {
		t.Fatalf("table (%v) lacks the peers' failures:\n%s", err, table.String())
	}
	checkJSON(t, r.JSONPath, true)
}

// TestRunPeerGPU: with a GPU, DALI's variants run once more with the mixed
// decoder, kept apart from the CPU figures and ratios.
func TestRunPeerGPU(t *testing.T) {
	o := tinyOptions(t)
	o.Clients, o.MaxWorkers, o.Repeat, o.Epochs, o.MaxImages = []int{1}, 2, 1, 2, 4
	gpu := true
	o.PeerGPU = &gpu
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	dali := r.Peers[0]
	if len(dali.GPU) != 4 || dali.GPU[0].Variant != "rrc/mixed" || dali.GPU[3].Variant != "roi/mixed" || len(dali.Cold) != 4 {
		t.Fatalf("dali GPU points %+v, cold %d; want rrc/mixed and roi/mixed at 1 and 2 workers beside 4 cold points", dali.GPU, len(dali.Cold))
	}
	for _, p := range r.Peers[1:] {
		if len(p.GPU) != 0 {
			t.Errorf("%s has GPU points %+v; only DALI has a GPU variant", p.Name, p.GPU)
		}
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil || !strings.Contains(table.String(), "rrc/mixed") {
		t.Fatalf("table (%v) lacks the GPU rows:\n%s", err, table.String())
	}
}

func TestRunRejects(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "unknown peer", opts: Options{Peers: []string{"pytorch"}}},
		{name: "peer twice", opts: Options{Peers: []string{"dali", "dali"}}},
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
		{name: "during a peer", trigger: "peer dali: rrc, workers 1"},
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
	o.Peers = []string{"dali"}
	o.PeerDir, o.PeerTimeout = fakePeerDir(t, "testdata/slowpeer.sh", "dali"), 200*time.Millisecond
	start := time.Now()
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v; want the peer's timeout reported, not returned", err)
	}
	if err := r.PeerErr(); err == nil || !strings.Contains(err.Error(), "timed out") || time.Since(start) > 30*time.Second {
		t.Fatalf("PeerErr() = %v after %v; want a prompt timeout", err, time.Since(start))
	}
}
