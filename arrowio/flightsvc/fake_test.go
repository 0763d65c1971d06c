package flightsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
)

// fakeSource serves datasets of n deterministic samples, sharded as SPEC §3
// says (identity order, or reversed when shuffling).
type fakeSource struct {
	name   string
	n      int
	h, w   int
	schema *arrow.Schema
	rows   [][]byte // pre-made image rows (bench); nil: made per sample

	mu          sync.Mutex
	fingerprint string
	planErr     error // returned by Plan
	streamErr   error // returned by Stream after the first batch
	panicPlan   bool

	// hold, when set, makes Stream wait after its first batch until ctx is
	// done or hold is closed; ctxDone is closed when Stream saw ctx done.
	hold      chan struct{}
	ctxDone   chan struct{}
	started   chan struct{} // closed once a first batch was sent
	startOnce sync.Once

	made, released atomic.Int64
	doubleRelease  atomic.Int64
}

func newFakeSource(t testing.TB, n, h, w int) *fakeSource {
	t.Helper()
	schema, err := arrowio.NewSchema(arrowio.ImageSpec(h, w, false), map[string]string{
		"loaderd.dataset":             "train",
		"loaderd.dataset_fingerprint": "fp1",
		"loaderd.pipeline":            "center_crop(size=4)",
		"loaderd.seed":                "7",
		"loaderd.epoch":               "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeSource{name: "train", n: n, h: h, w: w, schema: schema, fingerprint: "fp1"}
}

func (f *fakeSource) rowBytes() int { return f.h * f.w * 3 }

func (f *fakeSource) setFingerprint(fp string) {
	f.mu.Lock()
	f.fingerprint = fp
	f.mu.Unlock()
}

func (f *fakeSource) Datasets(context.Context) ([]service.DatasetInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return []service.DatasetInfo{{
		Name: f.name, Samples: int64(f.n), Classes: []string{"cat", "dog"},
		Pipeline: "center_crop(size=4)", Seed: 7, CachedEpochs: []int{0, 2},
		Schema: f.schema, Fingerprint: f.fingerprint,
	}}, nil
}

// positions returns the sample indexes of req's rank, from StartBatch on,
// cut into batches.
func (f *fakeSource) batches(req service.Request) [][]uint64 {
	n, w := f.n, req.WorldSize
	l := (n + w - 1) / w * w
	if req.DropLast {
		l = n / w * w
	}
	var mine []uint64
	for p := req.Rank; p < l; p += w {
		i := p % n
		if req.Shuffle {
			i = n - 1 - i
		}
		mine = append(mine, uint64(i))
	}
	var out [][]uint64
	for s := 0; s < len(mine); s += req.BatchSize {
		e := min(s+req.BatchSize, len(mine))
		if e-s < req.BatchSize && req.DropLast {
			break
		}
		out = append(out, mine[s:e])
	}
	if req.StartBatch >= len(out) {
		return nil
	}
	return out[req.StartBatch:]
}

func (f *fakeSource) Plan(_ context.Context, req service.Request) (service.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panicPlan {
		panic("fake: plan panics")
	}
	if f.planErr != nil {
		return service.Plan{}, f.planErr
	}
	if req.Dataset != f.name {
		return service.Plan{}, fmt.Errorf("fake: dataset %q: %w", req.Dataset, service.ErrNotFound)
	}
	if req.GPU != "" && req.GPU != "0" {
		return service.Plan{}, &service.FieldError{Field: "gpu", Reason: "no such GPU"}
	}
	bs := f.batches(req)
	var recs int64
	for _, b := range bs {
		recs += int64(len(b))
	}
	return service.Plan{Schema: f.schema, Records: recs, Batches: int64(len(bs)), Fingerprint: f.fingerprint}, nil
}

// pixel is the deterministic image byte j of sample i.
func pixel(i uint64, j int) byte { return byte(int(i)*31 + j*7) }

func (f *fakeSource) Stream(ctx context.Context, req service.Request, send func(*service.Batch) error) error {
	f.mu.Lock()
	streamErr := f.streamErr
	f.mu.Unlock()
	for k, idx := range f.batches(req) {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := &service.Batch{Index: idx, Label: make([]int64, len(idx)), Images: make([][]byte, len(idx))}
		for r, i := range idx {
			b.Label[r] = int64(i % 5)
			if f.rows != nil {
				b.Images[r] = f.rows[int(i)%len(f.rows)]
				continue
			}
			img := make([]byte, f.rowBytes())
			for j := range img {
				img[j] = pixel(i, j)
			}
			b.Images[r] = img
		}
		var once atomic.Bool
		b.Release = func() {
			if !once.CompareAndSwap(false, true) {
				f.doubleRelease.Add(1)
				return
			}
			f.released.Add(1)
		}
		f.made.Add(1)
		if err := send(b); err != nil {
			return err
		}
		if k == 0 {
			if f.started != nil {
				f.startOnce.Do(func() { close(f.started) })
			}
			if streamErr != nil {
				return streamErr
			}
			if f.hold != nil {
				select {
				case <-ctx.Done():
					if f.ctxDone != nil {
						close(f.ctxDone)
					}
					return ctx.Err()
				case <-f.hold:
				}
			}
		}
	}
	return nil
}

// waitReleased polls until every batch made was released (gRPC frees
// buffers from its writer goroutine, after the client may have read them).
func waitReleased(t *testing.T, f *fakeSource) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.released.Load() != f.made.Load() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if r, m := f.released.Load(), f.made.Load(); r != m {
		t.Errorf("released %d of %d batches", r, m)
	}
	if d := f.doubleRelease.Load(); d != 0 {
		t.Errorf("%d batches released twice", d)
	}
}

// startServer serves opts on 127.0.0.1:0 until the test ends; stop cancels
// Serve early and returns its error.
func startServer(t *testing.T, opts *Options) (addr string, stop func() error) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	var once sync.Once
	var serveErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			serveErr = <-done
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
	})
	return lis.Addr().String(), stop
}
