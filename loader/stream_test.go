package loader

import (
	"bytes"
	"context"
	"errors"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/loaderd/loaderd/service"
)

func TestStreamDeterminism(t *testing.T) {
	const n = 53
	root := fxDataset(t, n)
	want := fxEpoch(t, root, 3, nil)
	if len(want) != n {
		t.Fatalf("fresh epoch has %d samples, want %d", len(want), n)
	}
	tests := []struct {
		name    string
		workers int
		req     func(*service.Request)
	}{
		{name: "1 worker, index order", workers: 1, req: func(r *service.Request) { r.Shuffle = false }},
		{name: "4 workers, shuffled, batch 7", workers: 4},
		{name: "batch 1", workers: 3, req: func(r *service.Request) { r.BatchSize = 1 }},
		{name: "batch larger than the epoch", workers: 2, req: func(r *service.Request) { r.BatchSize = 500 }},
		{name: "rank 2 of 3", workers: 2, req: func(r *service.Request) { r.Rank, r.WorldSize = 2, 3 }},
		{name: "rank 0 of 4, drop_last", workers: 4, req: func(r *service.Request) { r.WorldSize, r.DropLast = 4, true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.Workers = tc.workers })
			req := fxReq(func(r *service.Request) {
				r.Epoch = 3
				if tc.req != nil {
					tc.req(r)
				}
			})
			got, err := fxCollect(context.Background(), l, req)
			if err != nil {
				t.Fatal(err)
			}
			fxSame(t, "cache miss", want, got)
			again, err := fxCollect(context.Background(), l, req)
			if err != nil {
				t.Fatal(err)
			}
			fxSame(t, "second stream", want, again)
			if !slices.Equal(got.Index, again.Index) {
				t.Fatalf("second stream order %v, first %v", again.Index, got.Index)
			}
		})
	}
}

func TestStreamCacheHitAndRestart(t *testing.T) {
	root := fxDataset(t, 40)
	want := fxEpoch(t, root, 0, nil)
	dir := t.TempDir()
	c := fxCache(t, dir, 0)
	l := fxLoader(t, root, c, nil)
	if _, err := fxCollect(context.Background(), l, fxReq(nil)); err != nil {
		t.Fatal(err)
	}
	if got := fxComputed(l, workStream); got != 40 {
		t.Fatalf("cold stream computed %d rows, want 40", got)
	}
	// Cold rows are cache misses (loaderd_cache_misses_total), cached ones hits.
	if h, m := testutil.ToFloat64(l.met.hits), testutil.ToFloat64(l.met.misses); h != 0 || m != 40 {
		t.Fatalf("cold stream: %v hits, %v misses; want 0 and 40", h, m)
	}
	got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.BatchSize = 9 }))
	if err != nil {
		t.Fatal(err)
	}
	fxSame(t, "cache hit", want, got)
	if got := fxComputed(l, workStream); got != 40 {
		t.Fatalf("after a cached stream %d rows computed, want still 40", got)
	}
	if h, m := testutil.ToFloat64(l.met.hits), testutil.ToFloat64(l.met.misses); h != 40 || m != 40 {
		t.Fatalf("cold then cached stream: %v hits, %v misses; want 40 and 40", h, m)
	}
	l.Close()
	c.Close()

	// A new process: new cache handle (checksums verified again), new loader.
	l2 := fxLoader(t, root, fxCache(t, dir, 0), func(o *Options) { o.Workers = 3 })
	got, err = fxCollect(context.Background(), l2, fxReq(func(r *service.Request) { r.Rank, r.WorldSize = 1, 2 }))
	if err != nil {
		t.Fatal(err)
	}
	fxSame(t, "after restart", want, got)
	if c := fxComputed(l2, workStream); c != 0 {
		t.Fatalf("restarted loader computed %d rows of a cached epoch", c)
	}
	if s := testutilServed(l2); s != len(got.Index) {
		t.Fatalf("served from cache %d rows, want %d", s, len(got.Index))
	}
}

func TestStreamRanksCoverEpoch(t *testing.T) {
	const n = 29
	root := fxDataset(t, n)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	tests := []struct {
		name      string
		world     int
		batch     int
		dropLast  bool
		wantTotal int // rows over all ranks
	}{
		{name: "padded", world: 4, batch: 3, wantTotal: 32},
		{name: "drop_last", world: 4, batch: 3, dropLast: true, wantTotal: 24},
		{name: "one rank", world: 1, batch: 5, wantTotal: 29},
		{name: "more ranks than samples", world: 40, batch: 2, wantTotal: 40},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[uint64]int{}
			total, batches := 0, -1
			for rank := range tc.world {
				req := fxReq(func(r *service.Request) {
					r.Rank, r.WorldSize, r.BatchSize, r.DropLast = rank, tc.world, tc.batch, tc.dropLast
				})
				got, err := fxCollect(context.Background(), l, req)
				if err != nil {
					t.Fatal(err)
				}
				o, _ := NewOrder(n, 42, req)
				for k := range o.Batches() {
					if want := o.Batch(k); len(want) != got.Batches[k] {
						t.Fatalf("rank %d batch %d has %d rows, want %d", rank, k, got.Batches[k], len(want))
					}
				}
				if batches >= 0 && len(got.Batches) != batches {
					t.Fatalf("rank %d got %d batches, rank 0 %d", rank, len(got.Batches), batches)
				}
				batches = len(got.Batches)
				for _, i := range got.Index {
					seen[i]++
				}
				total += len(got.Index)
			}
			if total != tc.wantTotal {
				t.Fatalf("ranks yield %d rows, want %d", total, tc.wantTotal)
			}
			if !tc.dropLast && len(seen) != n {
				t.Fatalf("ranks cover %d samples, want all %d", len(seen), n)
			}
		})
	}
}

func TestStreamStartBatch(t *testing.T) {
	root := fxDataset(t, 30)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	full, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch = 1; r.BatchSize = 4 }))
	if err != nil {
		t.Fatal(err)
	}
	tail, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch = 1; r.BatchSize = 4; r.StartBatch = 3 }))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tail.Index, full.Index[12:]) || !slices.Equal(tail.Batches, full.Batches[3:]) {
		t.Fatalf("start_batch 3 gives %v %v, want %v %v", tail.Index, tail.Batches, full.Index[12:], full.Batches[3:])
	}
	for r := range tail.Images {
		if !bytes.Equal(tail.Images[r], full.Images[12+r]) {
			t.Fatalf("row %d differs after start_batch", r)
		}
	}
	// 30 samples in batches of 4: 8 batches. start_batch 8 resumes after
	// the last one (an empty stream); 9 is past the end (SPEC §4).
	end, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.BatchSize = 4; r.StartBatch = 8 }))
	if err != nil || len(end.Index) != 0 {
		t.Fatalf("start_batch at the end: %d rows, %v; want none", len(end.Index), err)
	}
	_, err = fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.BatchSize = 4; r.StartBatch = 9 }))
	var fe *service.FieldError
	if !errors.As(err, &fe) || fe.Field != "start_batch" || !errors.Is(err, service.ErrInvalid) {
		t.Fatalf("start_batch past the end: %v; want an invalid start_batch", err)
	}
}

func TestStreamConcurrentRanksComputeEachRowOnce(t *testing.T) {
	const n = 45
	root := fxDataset(t, n)
	want := fxEpoch(t, root, 2, nil)
	l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.Workers = 4; o.InFlightBatches = 3 })
	// The job holds the epoch, as overlapping ranks do: a rank finishing
	// early must not drop the shards the others are still filling.
	_, release, err := l.acquire(l.sets["train"].current(), 2, workPrecompute)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var wg sync.WaitGroup
	got := make([]fxRows, 4)
	errs := make([]error, 4)
	for rank := range 4 {
		wg.Go(func() {
			got[rank], errs[rank] = fxCollect(context.Background(), l, fxReq(func(r *service.Request) {
				r.Epoch, r.Rank, r.WorldSize, r.BatchSize = 2, rank, 4, 3
			}))
		})
	}
	wg.Wait()
	for rank := range 4 {
		if errs[rank] != nil {
			t.Fatal(errs[rank])
		}
		fxSame(t, "concurrent rank", want, got[rank])
	}
	// 48 rows requested (padding repeats 3 samples), 45 distinct: each once.
	if c := fxComputed(l, workStream); c != n {
		t.Fatalf("computed %d rows for %d samples", c, n)
	}
}

func TestStreamCancel(t *testing.T) {
	root := fxDataset(t, 80)
	l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.ShardSize = 32 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches := 0
	done := make(chan error, 1)
	go func() {
		done <- l.Stream(ctx, fxReq(func(r *service.Request) { r.BatchSize = 2 }), func(b *service.Batch) error {
			b.Release()
			if batches++; batches == 2 {
				cancel()
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Stream after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Stream did not return after its context was cancelled")
	}
	// Work stopped: at most the batches in flight were computed.
	if c := fxComputed(l, workStream); c > 2*(2+l.opts.InFlightBatches)+l.opts.Workers {
		t.Fatalf("computed %d rows after cancelling at batch 2", c)
	}
	// The epoch is usable afterwards: its claims were given back.
	got, err := fxCollect(context.Background(), l, fxReq(nil))
	if err != nil || len(got.Index) != 80 {
		t.Fatalf("stream after a cancelled one: %d rows, %v", len(got.Index), err)
	}
}

func TestStreamSendError(t *testing.T) {
	root := fxDataset(t, 20)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	boom := errors.New("client gone")
	err := l.Stream(context.Background(), fxReq(nil), func(b *service.Batch) error {
		b.Release()
		return boom
	})
	if err != boom {
		t.Fatalf("Stream = %v, want send's error as is", err)
	}
}

func TestStreamAfterClose(t *testing.T) {
	root := fxDataset(t, 5)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	l.Close()
	_, err := fxCollect(context.Background(), l, fxReq(nil))
	if !errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("Stream after Close = %v, want ErrUnavailable", err)
	}
}

// TestStreamDuringPrecompute runs a precompute and streams of the same
// epochs at once: the bytes hold, and every row is computed exactly once
// by one or the other.
func TestStreamDuringPrecompute(t *testing.T) {
	const n = 60
	root := fxDataset(t, n)
	want := map[int]map[uint64][]byte{0: fxEpoch(t, root, 0, nil), 1: fxEpoch(t, root, 1, nil)}
	l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.Workers = 3 })
	var wg sync.WaitGroup
	var perr error
	wg.Go(func() { _, perr = l.Precompute(context.Background(), "train", []int{0, 1}, nil) })
	got := make([]fxRows, 2)
	errs := make([]error, 2)
	for e := range 2 {
		wg.Go(func() {
			got[e], errs[e] = fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch, r.BatchSize = e, 4 }))
		})
	}
	wg.Wait()
	if perr != nil {
		t.Fatal(perr)
	}
	for e := range 2 {
		if errs[e] != nil {
			t.Fatal(errs[e])
		}
		fxSame(t, "stream during precompute", want[e], got[e])
	}
	if s, p := fxComputed(l, workStream), fxComputed(l, workPrecompute); s+p != 2*n {
		t.Fatalf("stream computed %d rows and precompute %d; want %d in all", s, p, 2*n)
	}
	if st := fxStatus(t, l); st[0] != service.EpochComplete || st[1] != service.EpochComplete {
		t.Fatalf("cache status %v, want epochs 0 and 1 complete", st)
	}
}
