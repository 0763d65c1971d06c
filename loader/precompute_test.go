package loader

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/service"
)

func TestPrecomputeFusedMatchesStream(t *testing.T) {
	const n = 37
	root := fxDataset(t, n)
	dir := t.TempDir()
	l := fxLoader(t, root, fxCache(t, dir, 0), func(o *Options) { o.Workers = 3 })
	var last service.PrecomputeProgress
	calls := 0
	sum, err := l.Precompute(context.Background(), "train", []int{2, 0, 1, 2}, func(p service.PrecomputeProgress) error {
		calls++
		last = p
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sum.Epochs, []int{0, 1, 2}) || sum.Computed != 3*n || sum.Cached != 0 || sum.Bytes <= 0 {
		t.Fatalf("summary %+v; want epochs 0-2, %d computed, bytes > 0", sum, 3*n)
	}
	if calls == 0 || last.Done != last.Total || last.Total != 3*n {
		t.Fatalf("last progress %+v after %d calls; want done = total = %d", last, calls, 3*n)
	}
	if got := fxComputed(l, workPrecompute); got != 3*n {
		t.Fatalf("precompute rows metric %d, want %d", got, 3*n)
	}
	st, err := l.CacheStatus(context.Background(), "train")
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range st.Datasets[0].Epochs {
		if ep.State != service.EpochComplete || ep.Samples != n {
			t.Fatalf("epoch status %+v, want complete with %d samples", ep, n)
		}
	}
	if len(st.Datasets[0].Epochs) != 3 {
		t.Fatalf("cache status lists %d epochs, want 3", len(st.Datasets[0].Epochs))
	}

	// Idempotent: everything is cached now.
	calls = 0
	again, err := l.Precompute(context.Background(), "train", []int{0, 1, 2}, func(service.PrecomputeProgress) error {
		calls++
		return nil
	})
	if err != nil || again.Computed != 0 || again.Cached != 3*n {
		t.Fatalf("second precompute %+v, %v; want all cached", again, err)
	}
	if calls != 0 {
		t.Fatalf("a precompute of cached epochs reported progress %d times; want none (nothing to do)", calls)
	}

	for e := range 3 {
		want := fxEpoch(t, root, e, nil)
		got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch = e }))
		if err != nil {
			t.Fatal(err)
		}
		fxSame(t, "fused precompute", want, got)
	}
	if c := fxComputed(l, workStream); c != 0 {
		t.Fatalf("streams of precomputed epochs computed %d rows", c)
	}
	// Different epochs, different augmentations.
	e0, e1 := fxEpoch(t, root, 0, nil), fxEpoch(t, root, 1, nil)
	same := 0
	for i := range e0 {
		if string(e0[i]) == string(e1[i]) {
			same++
		}
	}
	if same == n {
		t.Fatal("epochs 0 and 1 are identical")
	}
}

func TestPrecomputeErrors(t *testing.T) {
	root := fxDataset(t, 5)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	if _, err := l.Precompute(context.Background(), "nope", []int{0}, nil); !errors.Is(err, service.ErrNotFound) {
		t.Fatalf("unknown dataset: %v, want ErrNotFound", err)
	}
	if _, err := l.Precompute(context.Background(), "train", nil, nil); !errors.Is(err, service.ErrInvalid) {
		t.Fatalf("no epochs: %v, want ErrInvalid", err)
	}
	if _, err := l.Precompute(context.Background(), "train", []int{-1}, nil); !errors.Is(err, service.ErrInvalid) {
		t.Fatalf("negative epoch: %v, want ErrInvalid", err)
	}
	stop := errors.New("stop")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Precompute(ctx, "train", []int{0}, func(service.PrecomputeProgress) error { return stop }); err == nil {
		t.Fatal("precompute with a cancelled context succeeded")
	}
}

// fxCorrupt replaces sample i's file with bytes no decoder accepts.
func fxCorrupt(t *testing.T, root string, l *Loader, i int) string {
	t.Helper()
	d, _ := l.Dataset("train")
	if err := os.WriteFile(d.File(i), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644); err != nil {
		t.Fatal(err)
	}
	return d.Samples[i].Path
}

func TestSubstitutePolicy(t *testing.T) {
	const n = 20
	root := fxDataset(t, n)
	probe := fxLoader(t, root, fxCache(t, "", 0), nil)
	bad := []int{6, 7, 19} // 6 and 7 in a row; 19 wraps to 0
	for _, i := range bad {
		fxCorrupt(t, root, probe, i)
	}
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	d, _ := l.Dataset("train")
	got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Shuffle = false; r.Epoch = 4 }))
	if err != nil {
		t.Fatal(err)
	}
	wantSub := map[int]int{6: 8, 7: 8, 19: 0}
	for pos := range n {
		src := pos
		if s, ok := wantSub[pos]; ok {
			src = s
		}
		if got.Index[pos] != uint64(src) || got.Label[pos] != d.Samples[src].Label {
			t.Fatalf("row %d carries index %d label %d, want %d %d", pos, got.Index[pos], got.Label[pos], src, d.Samples[src].Label)
		}
		// Sample pos's random stream on sample src's file.
		b, err := d.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]byte, l.pipe.RowBytes())
		if err := l.pipe.Apply(want, b, augment.SampleRand(42, 4, int64(pos))); err != nil {
			t.Fatal(err)
		}
		if string(want) != string(got.Images[pos]) {
			t.Fatalf("row %d differs from Apply(file %d, SampleRand(seed, 4, %d))", pos, src, pos)
		}
	}
	errs, err := l.DatasetErrors(context.Background(), "train")
	if err != nil {
		t.Fatal(err)
	}
	var idx []int
	for _, e := range errs {
		idx = append(idx, int(e.Index))
		if e.Path != d.Samples[e.Index].Path || e.Reason == "" {
			t.Fatalf("dataset error %+v lacks path or reason", e)
		}
	}
	if !slices.Equal(idx, bad) {
		t.Fatalf("dataset errors at %v, want %v", idx, bad)
	}
	if u := int(testutilUndecodable(l)); u != len(bad) {
		t.Fatalf("undecodable metric %d, want %d", u, len(bad))
	}
	// Fused precompute of the same epoch gives the same rows.
	l2 := fxLoader(t, root, fxCache(t, "", 0), nil)
	if _, err := l2.Precompute(context.Background(), "train", []int{3, 4}, nil); err != nil {
		t.Fatal(err)
	}
	again, err := fxCollect(context.Background(), l2, fxReq(func(r *service.Request) { r.Shuffle = false; r.Epoch = 4 }))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Index, got.Index) {
		t.Fatalf("precomputed indices %v, streamed %v", again.Index, got.Index)
	}
	for r := range got.Images {
		if string(got.Images[r]) != string(again.Images[r]) {
			t.Fatalf("row %d: precomputed and streamed bytes differ", r)
		}
	}
}

func TestFailPolicy(t *testing.T) {
	root := fxDataset(t, 12)
	probe := fxLoader(t, root, fxCache(t, "", 0), nil)
	path := fxCorrupt(t, root, probe, 5)
	l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.OnError = PolicyFail })
	_, err := fxCollect(context.Background(), l, fxReq(nil))
	if !errors.Is(err, service.ErrDataLoss) || !strings.Contains(err.Error(), path) {
		t.Fatalf("stream under fail policy = %v; want ErrDataLoss naming %s", err, path)
	}
	l2 := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.OnError = PolicyFail })
	_, err = l2.Precompute(context.Background(), "train", []int{0, 1}, nil)
	if !errors.Is(err, service.ErrDataLoss) || !strings.Contains(err.Error(), path) {
		t.Fatalf("precompute under fail policy = %v; want ErrDataLoss naming %s", err, path)
	}
	if errs, _ := l2.DatasetErrors(context.Background(), "train"); len(errs) != 1 || errs[0].Index != 5 {
		t.Fatalf("dataset errors %+v, want sample 5", errs)
	}
}

func TestCorruptShardRecomputed(t *testing.T) {
	root, dir := fxDataset(t, 40), t.TempDir()
	want := fxEpoch(t, root, 0, nil)
	fxCorruptShard1(t, root, dir)
	l2 := fxLoader(t, root, fxCache(t, dir, 0), nil)
	got, err := fxCollect(context.Background(), l2, fxReq(nil))
	if err != nil {
		t.Fatal(err)
	}
	fxSame(t, "after a corrupt shard", want, got)
	if c := fxComputed(l2, workStream); c != 16 {
		t.Fatalf("recomputed %d rows, want the 16 of the corrupt shard", c)
	}
	// The recomputed shard is committed once the last batch holding it is
	// released, in the background.
	fxPoll(t, "epoch 0 complete again", func() bool { return fxStatus(t, l2)[0] == service.EpochComplete })
}

// TestEpochLargerThanBudget: an epoch that cannot fit in the cache budget
// is still streamed, computed batch by batch into memory, with the same
// bytes; precomputing it is ResourceExhausted, and nothing reaches disk.
func TestEpochLargerThanBudget(t *testing.T) {
	root := fxDataset(t, 40)
	want := fxEpoch(t, root, 0, nil)
	c := fxCache(t, "", 1000) // smaller than one shard
	l := fxLoader(t, root, c, nil)
	for _, world := range []int{1, 3} {
		var got fxRows
		for rank := range world {
			rows, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) {
				r.Rank, r.WorldSize, r.BatchSize = rank, world, 7
			}))
			if err != nil {
				t.Fatalf("stream of an epoch over budget, rank %d of %d: %v", rank, world, err)
			}
			got.Index = append(got.Index, rows.Index...)
			got.Label = append(got.Label, rows.Label...)
			got.Images = append(got.Images, rows.Images...)
			got.Batches = append(got.Batches, rows.Batches...)
		}
		fxSame(t, "uncached stream", want, got)
		if n := len(fxByIndex(t, got)); n != 40 {
			t.Errorf("world size %d: the ranks cover %d of 40 samples", world, n)
		}
	}
	if n := fxComputed(l, workUncached); n < 2*40 {
		t.Errorf("computed %d rows uncached, want at least 80", n)
	}
	if _, err := l.Precompute(context.Background(), "train", []int{0}, nil); !errors.Is(err, service.ErrExhausted) {
		t.Fatalf("precompute over budget = %v, want ErrExhausted", err)
	}
	if u := c.Usage(); u != 0 {
		t.Errorf("cache holds %d bytes after uncached streams", u)
	}
}

// fxStatus returns the state of each cached epoch of "train".
func fxStatus(t *testing.T, l *Loader) map[int]string {
	t.Helper()
	st, err := l.CacheStatus(context.Background(), "train")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]string{}
	for _, e := range st.Datasets[0].Epochs {
		out[e.Epoch] = e.State
	}
	return out
}

// fxPoll waits until cond holds, failing after a deadline.
func fxPoll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPrefetch(t *testing.T) {
	root := fxDataset(t, 30)
	l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.PrefetchEpochs = 2 })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	if _, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch = 5 })); err != nil {
		t.Fatal(err)
	}
	fxPoll(t, "epochs 6 and 7 prefetched", func() bool {
		st := fxStatus(t, l)
		return st[6] == service.EpochComplete && st[7] == service.EpochComplete
	})
	if c := fxComputed(l, workPrefetch); c != 60 {
		t.Fatalf("prefetch computed %d rows, want 60", c)
	}
	want := fxEpoch(t, root, 7, nil)
	got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch = 7 }))
	if err != nil {
		t.Fatal(err)
	}
	fxSame(t, "prefetched epoch", want, got)
}

func TestEvict(t *testing.T) {
	root := fxDataset(t, 20)
	l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.PrefetchEpochs = 1 })
	if _, err := l.Precompute(context.Background(), "train", []int{0, 1}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := l.Evict(context.Background(), "train", []int{1, 5})
	if err != nil {
		t.Fatal(err)
	}
	if eps := st.Datasets[0].Epochs; len(eps) != 1 || eps[0].Epoch != 0 {
		t.Fatalf("after evicting epoch 1: %+v, want only epoch 0", eps)
	}
	// Each epoch asked for says what became of it: 5 was never cached.
	want := []service.EpochEviction{{Dataset: "train", Epoch: 1, Result: service.EvictFreed}, {Dataset: "train", Epoch: 5, Result: service.EvictNotCached}}
	if !slices.Equal(st.Evicted, want) {
		t.Fatalf("Evicted = %+v, want %+v", st.Evicted, want)
	}

	// Evicting a streamed epoch: evicting until the stream ends.
	sending := make(chan struct{})
	resume := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		first := true
		done <- l.Stream(context.Background(), fxReq(func(r *service.Request) { r.BatchSize = 5 }), func(b *service.Batch) error {
			b.Release()
			if first {
				first = false
				close(sending)
				<-resume
			}
			return nil
		})
	}()
	<-sending
	if st, err := l.Evict(context.Background(), "train", []int{0}); err != nil || len(st.Evicted) != 1 || st.Evicted[0].Result != service.EvictInUse {
		t.Fatalf("Evict of a streamed epoch: %+v, %v; want it in use (evicting)", st.Evicted, err)
	}
	if s := fxStatus(t, l)[0]; s != service.EpochEvicting {
		t.Fatalf("streamed epoch after evict is %q, want evicting", s)
	}
	// Epoch 1 was evicted explicitly: the stream of 0 does not bring it back.
	if d, es, _ := l.prefetchTarget(); len(es) != 0 {
		t.Fatalf("prefetch targets %s %v while epoch 1 is evicted", d.Name, es)
	}
	close(resume)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := fxStatus(t, l); len(st) != 0 {
		t.Fatalf("cache after the stream ended: %v, want empty", st)
	}
	// A stream asking for epoch 1 makes it prefetchable again, from epoch 0.
	if _, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch = 1 })); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	evicted := l.evicted[idOf(l.sets["train"].current(), 1)]
	l.mu.Unlock()
	if evicted {
		t.Fatal("epoch 1 still marked evicted after a stream asked for it")
	}
	if _, err := l.Evict(context.Background(), "nope", []int{0}); !errors.Is(err, service.ErrNotFound) {
		t.Fatalf("evict of unknown dataset = %v", err)
	}
}

// TestTruncatedFileIsUndecodable truncates a JPEG so that some crops of
// it still decode from its first rows: a file counts as decodable only if
// it decodes in full, so its row is substituted in every epoch, whichever
// rows a process computes first.
func TestTruncatedFileIsUndecodable(t *testing.T) {
	root := fxDatasetSized(t, 10, 20)
	probe := fxLoader(t, root, fxCache(t, "", 0), nil)
	d, _ := probe.Dataset("train")
	const bad = 4 // a .jpg
	full := fxJPEG(bad, 400)
	cut := full[:len(full)*3/4]
	if err := os.WriteFile(d.File(bad), cut, 0o644); err != nil {
		t.Fatal(err)
	}
	var partial []int
	for e := range 8 {
		dst := make([]byte, probe.pipe.RowBytes())
		if probe.pipe.Apply(dst, cut, augment.SampleRand(42, e, bad)) == nil {
			partial = append(partial, e)
		}
	}
	t.Logf("epochs whose crop of the truncated file decodes in part: %v", partial)

	// Epochs whose crop decodes in part come first in one process, last in
	// the other.
	first := append(slices.Clone(partial), 0, 1, 2, 3, 4, 5, 6, 7)
	last := append([]int{0, 1, 2, 3, 4, 5, 6, 7}, partial...)
	for _, order := range [][]int{first, last} {
		l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.Workers = 1 })
		for _, e := range order {
			got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch, r.Shuffle = e, false }))
			if err != nil {
				t.Fatal(err)
			}
			if got.Index[bad] != bad+1 {
				t.Fatalf("epoch %d (order %v): row %d carries index %d, want the substitute %d", e, order, bad, got.Index[bad], bad+1)
			}
		}
		if errs, _ := l.DatasetErrors(context.Background(), "train"); len(errs) != 1 || errs[0].Index != bad {
			t.Fatalf("dataset errors %+v, want sample %d", errs, bad)
		}
	}
}

// TestPrefetchWithinBudget: prefetch takes only the budget the streamed
// epoch leaves, since a stream cannot evict an epoch being prefetched.
func TestPrefetchWithinBudget(t *testing.T) {
	root := fxDataset(t, 32)
	probe := fxLoader(t, root, fxCache(t, "", 0), nil)
	size := probe.epochBytes(probe.sets["train"].current())
	if size <= 0 {
		t.Fatalf("epoch size %d", size)
	}
	tests := []struct {
		name   string
		budget int64
		want   []int
	}{
		{name: "no budget", budget: 0, want: []int{1, 2}},
		{name: "room for one more epoch", budget: size*2 + size/2, want: []int{1}},
		{name: "room for the streamed epoch only", budget: size + size/2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := fxLoader(t, root, fxCache(t, "", tc.budget), func(o *Options) { o.PrefetchEpochs = 2 })
			var got []int
			err := l.Stream(context.Background(), fxReq(nil), func(b *service.Batch) error {
				b.Release()
				if got == nil {
					_, got, _ = l.prefetchTarget()
					got = append([]int{}, got...)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("prefetch targets %v while streaming epoch 0, want %v", got, tc.want)
			}
		})
	}
}

// TestUncachedStreamCancel: cancelling an uncached stream after its first
// batch ends it promptly with the context's error, and every batch sent
// is released once.
func TestUncachedStreamCancel(t *testing.T) {
	root := fxDataset(t, 60)
	l := fxLoader(t, root, fxCache(t, "", 1000), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := 0
	done := make(chan error, 1)
	go func() {
		done <- l.Stream(ctx, fxReq(func(r *service.Request) { r.BatchSize = 4 }), func(b *service.Batch) error {
			sent++
			b.Release()
			b.Release() // a second call must be harmless
			cancel()
			return nil
		})
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled uncached stream = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("uncached stream did not stop within 10s of cancel")
	}
	if sent == 0 || sent >= 15 {
		t.Errorf("sent %d of 15 batches before stopping", sent)
	}
}

// TestPrecomputeKeepsWhatFits: a precompute of more epochs than the cache
// budget holds computes and keeps the epochs that fit, leaves the rest out
// with a BudgetError in human units, and reports progress over the whole
// request, so a display stops where the work did.
func TestPrecomputeKeepsWhatFits(t *testing.T) {
	root := fxDataset(t, 32)
	probe := fxLoader(t, root, fxCache(t, "", 0), nil)
	size := probe.epochBytes(probe.sets["train"].current())
	l := fxLoader(t, root, fxCache(t, "", 2*size+size/2), nil)
	var last service.PrecomputeProgress
	sum, err := l.Precompute(context.Background(), "train", []int{0, 1, 2, 3}, func(p service.PrecomputeProgress) error {
		last = p
		return nil
	})
	var be *BudgetError
	if !errors.As(err, &be) || !errors.Is(err, service.ErrExhausted) {
		t.Fatalf("Precompute = %v; want a BudgetError wrapping ErrExhausted", err)
	}
	if !slices.Equal(be.Kept, []int{0, 1}) || !slices.Equal(be.Left, []int{2, 3}) || be.Need != 2*size || be.EpochBytes != size {
		t.Errorf("BudgetError = %+v; want epochs 0,1 kept, 2,3 left needing %d", be, 2*size)
	}
	for _, w := range []string{"epochs 2-3 of train do not fit", "KiB", "epochs 0-1 are cached", "would hold them all"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("message %q lacks %q", err, w)
		}
	}
	if !slices.Equal(sum.Epochs, []int{0, 1}) || sum.Computed != 64 {
		t.Errorf("summary %+v; want epochs 0,1 and 64 samples computed", sum)
	}
	if last.Done != 64 || last.Total != 128 {
		t.Errorf("last progress %d of %d; want 64 of 128 (the request's total)", last.Done, last.Total)
	}
	if st := fxStatus(t, l); st[0] != service.EpochComplete || st[1] != service.EpochComplete || len(st) != 2 {
		t.Errorf("cache status %v; want epochs 0 and 1 complete, nothing else", st)
	}
	// Asked again, the kept epochs count as cached and the rest still does not fit.
	sum, err = l.Precompute(context.Background(), "train", []int{0, 1, 2, 3}, nil)
	if !errors.As(err, &be) || sum.Cached != 64 || sum.Computed != 0 {
		t.Errorf("second Precompute = %+v, %v; want 64 cached, 0 computed, a BudgetError", sum, err)
	}
}

// TestOtherEpochs: epochs of the same dataset cached under another seed or
// pipeline are listed (pipeline text, seed, epochs, bytes) by OtherEpochs
// and by the cache-status action; the loader's own are not.
func TestOtherEpochs(t *testing.T) {
	root := fxDataset(t, 20)
	dir := t.TempDir()
	c := fxCache(t, dir, 0)
	first := fxLoader(t, root, c, nil) // seed 42, fxPipeline
	if _, err := first.Precompute(context.Background(), "train", []int{0, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	first.Close()
	l := fxLoader(t, root, c, func(o *Options) { o.Seed = 7 })
	if _, err := l.Precompute(context.Background(), "train", []int{0}, nil); err != nil {
		t.Fatal(err)
	}
	others, err := l.OtherEpochs("train")
	if err != nil {
		t.Fatal(err)
	}
	canonical := first.opts.Pipeline.String()
	if len(others) != 1 || others[0].Seed != 42 || !slices.Equal(others[0].Epochs, []int{0, 2, 3}) ||
		others[0].Pipeline != canonical || others[0].ShardSize != 16 || others[0].Bytes <= 0 {
		t.Fatalf("OtherEpochs = %+v; want seed 42, epochs 0,2,3 under %q", others, canonical)
	}
	st, err := l.CacheStatus(context.Background(), "train")
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Datasets[0]; len(d.Other) != 1 || len(d.Epochs) != 1 || d.Epochs[0].Epoch != 0 {
		t.Errorf("cache-status = %+v; want its own epoch 0 and the other group", d)
	}
	if _, err := l.OtherEpochs("nosuch"); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("OtherEpochs of an unknown dataset = %v, want ErrNotFound", err)
	}
}

// TestEarlierListings: epochs cached under an earlier listing of a served
// dataset (the same name and path; files changed since) are listed by
// OtherEpochs and cache-status as the earlier listing's, whether the change
// came before a restart or while serving; they are retired (evicted first
// under the budget), and EvictOther removes them, or with all the whole
// dataset's entry. Another dataset's epochs in the same cache are neither.
func TestEarlierListings(t *testing.T) {
	root, otherRoot := fxDataset(t, 20), fxDataset(t, 6)
	dir := t.TempDir()
	c := fxCache(t, dir, 0)
	ctx := context.Background()
	two := func(o *Options) { o.Datasets = append(o.Datasets, DatasetSpec{Name: "other", Path: otherRoot}) }
	first := fxLoader(t, root, c, two)
	old := first.sets["train"].current().Fingerprint
	for _, name := range []string{"train", "other"} {
		if _, err := first.Precompute(ctx, name, []int{0, 1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	first.Close()

	// A file added while no loader ran: the restarted loader lists anew.
	writeFile(t, filepath.Join(root, "c0", "new.png"), string(fxImage(99, 20)))
	l := fxLoader(t, root, c, two)
	earlier := func(what string, want []int, fp string) {
		t.Helper()
		others, err := l.OtherEpochs("train")
		if err != nil {
			t.Fatal(err)
		}
		if len(others) != 1 || others[0].Listing != service.ListingEarlier || !slices.Equal(others[0].Epochs, want) ||
			others[0].Fingerprint != fp || others[0].Bytes <= 0 || others[0].Listed == "" || others[0].Seed != 42 {
			t.Fatalf("%s: OtherEpochs = %+v; want epochs %v of the earlier listing %.8s", what, others, want, fp)
		}
		for _, info := range c.Epochs() {
			if info.Key.Dataset == fp && !info.Retired {
				t.Errorf("%s: epoch %d of the earlier listing is not retired", what, info.Key.Epoch)
			}
		}
	}
	earlier("after a restart", []int{0, 1}, old)
	st, err := l.CacheStatus(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Datasets[0]; d.Dataset != "train" || len(d.Other) != 1 || d.Other[0].Listing != service.ListingEarlier || len(d.Epochs) != 0 {
		t.Errorf("cache-status of train = %+v; want no epoch of its own and the earlier listing's", d)
	}
	if d := st.Datasets[1]; d.Dataset != "other" || len(d.Other) != 0 || len(d.Epochs) != 2 {
		t.Errorf("cache-status of other = %+v; want its two epochs, no earlier listing", d)
	}
	if _, err := l.EvictOther(ctx, "train", false); err != nil {
		t.Fatal(err)
	}
	if others, _ := l.OtherEpochs("train"); len(others) != 0 {
		t.Errorf("OtherEpochs after EvictOther = %+v", others)
	}

	// A change while serving: the listing current until then is earlier.
	if _, err := l.Precompute(ctx, "train", []int{3}, nil); err != nil {
		t.Fatal(err)
	}
	cur := l.sets["train"].current().Fingerprint
	if err := os.Remove(filepath.Join(root, "c0", "new.png")); err != nil {
		t.Fatal(err)
	}
	if res, err := l.Rescan(ctx, "train"); err != nil || !res.Datasets[0].Changed {
		t.Fatalf("Rescan = %+v, %v", res, err)
	}
	earlier("after a change while serving", []int{3}, cur)

	if _, err := l.Precompute(ctx, "train", []int{5}, nil); err != nil {
		t.Fatal(err)
	}
	st, err = l.EvictOther(ctx, "train", true)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.Datasets[0]; len(d.Epochs) != 0 || len(d.Other) != 0 {
		t.Errorf("cache-status after evicting all of train = %+v; want nothing", d)
	}
	for _, info := range c.Epochs() {
		if info.Key.Dataset != l.sets["other"].current().Fingerprint {
			t.Errorf("after evicting all of train the cache holds %v", info.Key)
		}
	}
}

// TestOperatorMessages: what the server logs says what happened and what
// follows or what the operator can do, never what a client should do (an
// operator cannot "ask for the dataset again").
func TestOperatorMessages(t *testing.T) {
	changed := &ChangedError{Path: "a/1.jpg", Index: 3, Reason: "vanished"}
	tests := []struct {
		name string
		msg  string
		want string
	}{
		{name: "changed file", msg: changed.Error(), want: "a/1.jpg (sample 3) changed since the dataset was listed (vanished)"},
		{name: "prefetch of a changed dataset", msg: prefetchStopped(fmt.Errorf("x: %w", changed)), want: "the new listing's epochs are prefetched once a stream reads them"},
		{name: "prefetch over budget", msg: prefetchStopped(fmt.Errorf("x: %w", service.ErrExhausted)), want: "--cache-budget"},
		{name: "prefetch of an unreadable file", msg: prefetchStopped(&ReadError{Path: "a", Err: fs.ErrPermission}), want: "permissions"},
		{name: "prefetch under the fail policy", msg: prefetchStopped(fmt.Errorf("x: %w", service.ErrDataLoss)), want: "loaderd scan"},
		{name: "prefetch, other", msg: prefetchStopped(errors.New("x")), want: "starts again with the next stream"},
	}
	for _, tc := range tests {
		if !strings.Contains(tc.msg, tc.want) {
			t.Errorf("%s: %q; want %q", tc.name, tc.msg, tc.want)
		}
		for _, bad := range []string{"ask ", "again later", "GetFlightInfo", "request again"} {
			if strings.Contains(tc.msg, bad) {
				t.Errorf("%s: %q tells a client what to do (%q)", tc.name, tc.msg, bad)
			}
		}
	}
}
