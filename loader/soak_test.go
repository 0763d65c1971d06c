package loader

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/service"
)

var (
	soakLong = flag.Bool("long", false, "TestSoak: the long form (-soak-for, 5 minutes by default)")
	soakFor  = flag.Duration("soak-for", 0, "TestSoak: how long the clients run; 0 means 8s, or 5m with -long")
)

// Soak parameters.
const (
	soakClients = 16
	soakSamples = 48
	soakEpochs  = 6
)

// soakStats counts what the clients did.
type soakStats struct {
	verified, cancelled, dropped, dials atomic.Int64
}

// TestSoak runs 16 clients against one server on loopback for a bounded
// time: each connects, streams random requests (epoch, rank, world size,
// batch size, start_batch, shuffle; half over the ordinary stream, half
// over the client's default, which reads the cache in place on this
// host), cancels some mid-stream, drops its
// connection in the middle of others and reconnects. Every stream that
// completes is checked by hash against a fresh computation; no call may
// fail for a reason the clients did not cause; and once the clients are
// gone, the goroutines, the memory and the loader's state are back where
// they were (the counts are logged). `go test ./loader -run TestSoak -long`
// runs it for minutes.
func TestSoak(t *testing.T) {
	dur := *soakFor
	if dur == 0 {
		dur = 8 * time.Second
		if *soakLong {
			dur = 5 * time.Minute
		}
	}
	root := fxDataset(t, soakSamples)
	want := make([]map[uint64][]byte, soakEpochs)
	for e := range want {
		want[e] = fxEpoch(t, root, e, nil)
	}
	l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.ShardSize, o.PrefetchEpochs = 8, 1 })
	fxRun(t, l)
	addr := fxServe(t, l, &flightsvc.Options{MaxStreams: 4 * soakClients})
	d, _ := l.Dataset("train")

	var stats soakStats
	var failMu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		failMu.Lock()
		defer failMu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	run := func(deadline time.Time, warm bool) {
		var wg sync.WaitGroup
		for c := range soakClients {
			wg.Go(func() {
				soakClient(c, deadline, warm, addr, d, want, &stats, fail)
			})
		}
		wg.Wait()
	}
	// Warm up: every client streams once, so the pools, caches and gRPC's
	// buffers reach their working size before the first measurement.
	run(time.Now(), true)
	g0, rss0, heap0 := soakSettle(t, 0)

	start := time.Now()
	run(start.Add(dur), false)
	elapsed := time.Since(start)
	g1, rss1, heap1 := soakSettle(t, g0)

	t.Logf("soak %v, %d clients: %d streams verified by hash, %d cancelled, %d connections dropped mid-stream, %d dials",
		elapsed.Round(time.Millisecond), soakClients, stats.verified.Load(), stats.cancelled.Load(), stats.dropped.Load(), stats.dials.Load())
	t.Logf("goroutines %d → %d; RSS %.1f → %.1f MiB; Go heap %.1f → %.1f MiB",
		g0, g1, float64(rss0)/(1<<20), float64(rss1)/(1<<20), float64(heap0)/(1<<20), float64(heap1)/(1<<20))
	for _, f := range failures {
		t.Error(f)
	}
	if stats.verified.Load() < soakClients {
		t.Errorf("only %d streams completed", stats.verified.Load())
	}
	if g1 > g0+4 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if rss1 > rss0+rss0/2+32<<20 {
		t.Errorf("RSS grew from %d to %d bytes", rss0, rss1)
	}
	// The loader holds nothing of the streams: no epoch in use, no pin.
	l.mu.Lock()
	open, live := len(l.epochs), len(l.live)
	l.mu.Unlock()
	if open != 0 || live != 0 {
		t.Errorf("after the clients left: %d epochs in use, %d live", open, live)
	}
	for _, info := range l.cache.Epochs() {
		if info.Pinned {
			t.Errorf("epoch %d still pinned after the clients left", info.Key.Epoch)
		}
	}
}

// soakClient is one client of TestSoak until deadline (warm: one complete
// stream, then it returns).
func soakClient(id int, deadline time.Time, warm bool, addr string, d *Dataset, want []map[uint64][]byte, stats *soakStats, fail func(string, ...any)) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	var c *flightsvc.Client
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for first := true; first || time.Now().Before(deadline); first = false {
		if c == nil || rng.IntN(4) == 0 {
			if c != nil {
				c.Close()
			}
			var err error
			if c, err = flightsvc.Dial(context.Background(), addr, nil); err != nil {
				fail("client %d: dial: %v", id, err)
				return
			}
			stats.dials.Add(1)
		}
		world := 1 + rng.IntN(3)
		req := service.Request{
			Dataset: "train", Epoch: rng.IntN(soakEpochs), BatchSize: 1 + rng.IntN(16),
			Rank: rng.IntN(world), WorldSize: world, DropLast: rng.IntN(2) == 0, Shuffle: rng.IntN(4) != 0,
		}
		if rng.IntN(2) == 0 {
			req.Transport = service.TransportFlight // else the client's "auto": local here
		}
		o, err := NewOrder(d.Len(), 42, req)
		if err != nil {
			fail("client %d: %v", id, err)
			return
		}
		if o.Batches() > 0 {
			req.StartBatch = rng.IntN(o.Batches())
		}
		o, err = NewOrder(d.Len(), 42, req)
		if err != nil {
			fail("client %d: %v", id, err)
			return
		}
		wh := newRowHash()
		for k := range o.Batches() {
			for _, i := range o.Batch(k) {
				wh.add(uint64(i), d.Samples[i].Label, want[req.Epoch][uint64(i)])
			}
		}
		wantHash := wh.sum()
		mode := rng.IntN(6)
		if warm {
			mode = 5
		}
		stopAt := 1 + rng.IntN(min(3, o.Batches())) // a batch the stream sends
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		h, seen := newRowHash(), 0
		_, err = c.Fetch(ctx, req, func(rec arrow.RecordBatch) error {
			if err := h.addRecord(rec); err != nil {
				return err
			}
			if seen++; seen == stopAt {
				switch mode {
				case 0:
					cancel()
				case 1:
					c.Close()
				}
			}
			return nil
		})
		cancel()
		caused := seen >= stopAt && mode <= 1
		switch {
		case err == nil:
			if got := h.sum(); got != wantHash {
				fail("client %d: %s: rows differ from a fresh computation", id, describe(req))
			} else {
				stats.verified.Add(1)
			}
		case caused && mode == 0 && (errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled):
			stats.cancelled.Add(1)
		case caused && mode == 1 && (status.Code(err) == codes.Canceled || status.Code(err) == codes.Unavailable):
			stats.dropped.Add(1)
		default:
			fail("client %d: %s (mode %d after %d batches): %v", id, describe(req), mode, seen, err)
		}
		if mode == 1 && caused {
			c = nil // closed: dial again
		}
	}
}

// describe writes a request compactly for failure messages.
func describe(r service.Request) string {
	return fmt.Sprintf("epoch %d rank %d/%d batch %d start %d drop_last %v shuffle %v",
		r.Epoch, r.Rank, r.WorldSize, r.BatchSize, r.StartBatch, r.DropLast, r.Shuffle)
}

// soakSettle waits (up to 10 s) for the goroutine count to come down to
// base (0: just let it settle), then returns it, the resident set and the
// Go heap after a GC that returns freed memory to the OS.
func soakSettle(t *testing.T, base int) (goroutines int, rss, heap uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	prev := -1
	for time.Now().Before(deadline) {
		runtime.GC()
		n := runtime.NumGoroutine()
		if (base > 0 && n <= base) || (base == 0 && n == prev) {
			break
		}
		prev = n
		time.Sleep(100 * time.Millisecond)
	}
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), residentBytes(t), ms.HeapAlloc
}

// residentBytes reads the process's resident set (VmRSS) from /proc.
func residentBytes(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}
