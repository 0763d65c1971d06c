package loader

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
	"github.com/loaderd/loaderd/tier"
)

// fxNode is one loader of a many-node job: its own cache, the shared tier,
// background prefetch running.
type fxNode struct {
	l     *Loader
	cache *shardcache.Cache
	stop  func()
}

func fxStartNode(t *testing.T, root, cacheDir, tierURL string, prefetch int) *fxNode {
	t.Helper()
	c := fxCache(t, cacheDir, 0)
	var st *tier.Store
	if tierURL != "" {
		var err error
		if st, err = tier.Open(context.Background(), tierURL, nil); err != nil {
			t.Fatal(err)
		}
	}
	l := fxLoader(t, root, c, func(o *Options) { o.PrefetchEpochs, o.Tier = prefetch, st })
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { l.Run(ctx) })
	n := &fxNode{l: l, cache: c}
	n.stop = func() {
		cancel()
		wg.Wait()
		l.Close()
		c.Close()
	}
	return n
}

// stream streams rank r of a world of 4 from epoch e and returns its rows.
func (n *fxNode) stream(t *testing.T, e, r int) fxRows {
	t.Helper()
	got, err := fxCollect(context.Background(), n.l, fxReq(func(q *service.Request) {
		q.Epoch, q.Rank, q.WorldSize, q.BatchSize = e, r, 4, 5
	}))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestNodeAware: two nodes of a job of world size 4, two ranks each, a
// shared tier between them. Each node computes only its ranks' rows, for
// the streams and for the next epoch's prefetch: across the nodes every row
// of an epoch is computed once (48 of 48), and epoch 1 streams without
// computing. Restarted, a node serves its rows again from its partial
// shards; a node with an empty cache reads them from the tier. The bytes
// are those of one loader computing the epoch alone.
func TestNodeAware(t *testing.T) {
	const n = 48 // a multiple of the world size: no padding, no duplicate rows
	root := fxDataset(t, n)
	tierURL := "file://" + t.TempDir()
	want := []map[uint64][]byte{fxEpoch(t, root, 0, nil), fxEpoch(t, root, 1, nil)}
	dirA, dirB := t.TempDir(), t.TempDir()
	a := fxStartNode(t, root, dirA, tierURL, 1)
	b := fxStartNode(t, root, dirB, tierURL, 1)
	nodeOf := []*fxNode{a, a, b, b}

	for r, nd := range nodeOf {
		fxSame(t, "epoch 0", want[0], nd.stream(t, 0, r))
	}
	for _, nd := range []*fxNode{a, b} {
		if got := fxComputed(nd.l, workStream); got != n/2 {
			t.Errorf("a node computed %d rows of epoch 0 for its streams; want %d (its two ranks')", got, n/2)
		}
	}
	// Prefetch learned the ranks: epoch 1's rows of the node's ranks only.
	waitFor(t, "prefetch of epoch 1", func() bool {
		return fxComputed(a.l, workPrefetch) >= n/2 && fxComputed(b.l, workPrefetch) >= n/2
	})
	for r, nd := range nodeOf {
		fxSame(t, "epoch 1", want[1], nd.stream(t, 1, r))
	}
	total := 0
	for _, nd := range []*fxNode{a, b} {
		if got := fxComputed(nd.l, workStream); got != n/2 {
			t.Errorf("after epoch 1 a node's streams computed %d rows; want %d (epoch 1 all prefetched)", got, n/2)
		}
		total += fxComputed(nd.l, workStream) + fxComputed(nd.l, workPrefetch)
	}
	// Epoch 2's prefetch may have started since epoch 1 streamed: count
	// only up to epoch 1, by stopping and subtracting what went on.
	a.stop()
	b.stop()
	if total < 2*n || total > 3*n {
		t.Errorf("rows computed across the nodes: %d; want 2×%d for epochs 0 and 1 (plus epoch 2's prefetch, at most %d)", total, n, n)
	}

	// Node A restarted on its cache: its rows are partial shards on disk.
	a = fxStartNode(t, root, dirA, "", 0)
	for r := range 2 {
		fxSame(t, "epoch 0 after a restart", want[0], a.stream(t, 0, r))
	}
	if got := fxComputed(a.l, workStream); got != 0 {
		t.Errorf("restarted node computed %d rows; want 0", got)
	}
	if got := int(testutil.ToFloat64(a.l.met.resumed)); got < n/2 {
		t.Errorf("restarted node resumed %d rows from partial shards; want at least %d", got, n/2)
	}
	a.stop()

	// A node with an empty cache serves every rank from the tier's parts.
	c := fxStartNode(t, root, t.TempDir(), tierURL, 0)
	for r := range 4 {
		fxSame(t, "epoch 0 from the tier", want[0], c.stream(t, 0, r))
	}
	if got := fxComputed(c.l, workStream); got != 0 {
		t.Errorf("node on an empty cache computed %d rows; want 0 (all in the tier)", got)
	}
	if got := int(testutil.ToFloat64(c.l.met.fetched)); got != n {
		t.Errorf("node on an empty cache fetched %d rows from the tier; want %d", got, n)
	}
	c.stop()
}

// TestHeldBatchesKeepPartialShards: a stream ends while gRPC still holds
// its last batch (the shard's writer with it); the next stream of the epoch
// waits for that batch's release instead of writing the shards into
// temporary files, so both streams' rows stay in the partial shards and
// streaming them again computes nothing.
func TestHeldBatchesKeepPartialShards(t *testing.T) {
	root := fxDataset(t, 48)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	req := func(r int) service.Request {
		return fxReq(func(q *service.Request) { q.Rank, q.WorldSize, q.BatchSize = r, 2, 6 })
	}
	var held func()
	err := l.Stream(context.Background(), req(0), func(b *service.Batch) error {
		if held != nil {
			held()
		}
		held = b.Release // the last one stays held after the stream
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := fxCollect(context.Background(), l, req(1))
		done <- err
	}()
	held() // gRPC lets go of the batch: the epoch is released, rank 1 goes on
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	before := fxComputed(l, workStream)
	for r := range 2 {
		if _, err := fxCollect(context.Background(), l, req(r)); err != nil {
			t.Fatal(err)
		}
	}
	if got := fxComputed(l, workStream) - before; got != 0 {
		t.Errorf("both ranks again computed %d rows; want 0 (all kept in the partial shards)", got)
	}
}

// TestCacheStatusCountsPartialRows: cache-status counts the rows of an
// epoch's partial shards (a node serving half the ranks completes no
// shard): those its writers hold while it runs, and, after a restart,
// those their journals name.
func TestCacheStatusCountsPartialRows(t *testing.T) {
	const n = 48
	root := fxDataset(t, n)
	dir := t.TempDir()
	check := func(what string, l *Loader) {
		t.Helper()
		st, err := l.CacheStatus(context.Background(), "train")
		if err != nil {
			t.Fatal(err)
		}
		eps := st.Datasets[0].Epochs
		if len(eps) != 1 || eps[0].Epoch != 0 || eps[0].State != service.EpochPartial || eps[0].Samples != n/2 || eps[0].Bytes <= 0 {
			t.Errorf("%s: cache-status %+v; want epoch 0 partial with %d samples", what, eps, n/2)
		}
	}
	a := fxStartNode(t, root, dir, "", 0)
	a.stream(t, 0, 0)
	a.stream(t, 0, 1) // ranks 0 and 1 of 4: half of every shard's rows
	check("while serving", a.l)
	a.stop()
	b := fxStartNode(t, root, dir, "", 0)
	defer b.stop()
	check("after a restart", b.l)
}

// TestPrecomputeCountsResumedRows: a precompute's summary accounts for
// every row it was asked for: computed, cached in complete shards, or
// resumed from partial shards an earlier run kept.
func TestPrecomputeCountsResumedRows(t *testing.T) {
	const n = 48
	root := fxDataset(t, n)
	dir := t.TempDir()
	a := fxStartNode(t, root, dir, "", 0)
	a.stream(t, 0, 0)
	a.stream(t, 0, 1) // half of every shard's rows, kept partial
	a.stop()
	b := fxStartNode(t, root, dir, "", 0)
	defer b.stop()
	sum, err := b.l.Precompute(context.Background(), "train", []int{0, 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Computed != n+n/2 || sum.Resumed != n/2 || sum.Cached != 0 {
		t.Errorf("precompute of epochs 0-1 after half of epoch 0 was kept partial: %+v; want %d computed, %d resumed", sum, n+n/2, n/2)
	}
	sum, err = b.l.Precompute(context.Background(), "train", []int{0, 1}, nil)
	if err != nil || sum.Computed != 0 || sum.Resumed != 0 || sum.Cached != 2*n {
		t.Errorf("precompute again: %+v, %v; want all %d cached", sum, err, 2*n)
	}
}
