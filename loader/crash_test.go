package loader

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// Environment of TestCrashChild, set by TestPrecomputeCrash.
const (
	crashDataEnv  = "LOADERD_CRASH_DATA"
	crashCacheEnv = "LOADERD_CRASH_CACHE"
)

// crashEpochs are the epochs the crash test precomputes.
var crashEpochs = []int{0, 1, 2, 3}

// TestCrashChild is the process TestPrecomputeCrash kills: it precomputes
// the epochs of the dataset named by the environment into the cache there.
// Without that environment it has nothing to do.
func TestCrashChild(t *testing.T) {
	root, dir := os.Getenv(crashDataEnv), os.Getenv(crashCacheEnv)
	if root == "" || dir == "" {
		return
	}
	l := fxLoader(t, root, fxCache(t, dir, 0), func(o *Options) { o.Workers = 1 })
	if _, err := l.Precompute(context.Background(), "train", crashEpochs, nil); err != nil {
		t.Fatal(err)
	}
}

// TestPrecomputeCrash kills a precompute at random moments: every shard
// the cache then serves must verify and hold the rows a fresh computation
// gives, and a last run must complete what the killed ones left.
func TestPrecomputeCrash(t *testing.T) {
	const n = 200
	root := fxDatasetSized(t, n, 120)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for kill := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDataEnv+"="+root, crashCacheEnv+"="+dir)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		delay := time.Duration(30+rng.IntN(300)) * time.Millisecond
		time.Sleep(delay) // the point is a random moment, not synchronisation
		_ = cmd.Process.Kill()
		err := cmd.Wait()
		t.Logf("kill %d after %v: %v", kill, delay, err)
	}

	c := fxCache(t, dir, 0)
	l := fxLoader(t, root, c, nil)
	d := l.sets["train"].current()
	want := map[int]map[uint64][]byte{} // fresh rows, straight from the pipeline
	for _, e := range crashEpochs {
		want[e] = map[uint64][]byte{}
	}
	for i := range n {
		dsts := make([][]byte, len(crashEpochs))
		for k := range dsts {
			dsts[k] = make([]byte, l.pipe.RowBytes())
		}
		if _, err := l.computeFused(d, crashEpochs, i, dsts); err != nil {
			t.Fatal(err)
		}
		for k, e := range crashEpochs {
			want[e][uint64(i)] = dsts[k]
		}
	}
	committed := 0
	for _, e := range crashEpochs {
		schema, err := l.schema(d, e)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.Shards(l.key(d, e)) {
			m, err := c.Open(l.key(d, e), s)
			if errors.Is(err, shardcache.ErrCorrupt) {
				t.Fatalf("epoch %d shard %d is visible but corrupt: %v", e, s, err)
			} else if err != nil {
				t.Fatal(err)
			}
			rows := min(16, n-s*16)
			v, err := arrowio.OpenShard(m.Data(), schema, rows)
			if err != nil {
				t.Fatalf("epoch %d shard %d: %v", e, s, err)
			}
			for p := range rows {
				i := uint64(s*16 + p)
				if v.Index(p) != i || v.Label(p) != d.Samples[i].Label || string(v.Row(p)) != string(want[e][i]) {
					t.Fatalf("epoch %d shard %d row %d differs from a fresh computation", e, s, p)
				}
			}
			m.Release()
			committed++
		}
	}
	t.Logf("%d shards committed by the killed runs", committed)

	cachedRows := int64(committed*16 - committedShort(c, l, d, n))
	sum, err := l.Precompute(context.Background(), "train", crashEpochs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Computed+sum.Cached != int64(len(crashEpochs)*n) || sum.Cached != cachedRows {
		t.Fatalf("final run %+v after %d committed shards", sum, committed)
	}
	for _, e := range crashEpochs {
		got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch = e }))
		if err != nil {
			t.Fatal(err)
		}
		fxSame(t, "after crashes", want[e], got)
	}
	// Nothing of the killed runs is left behind: no temporary file, no
	// reservation, and the cache's usage is the epochs' bytes.
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*", "*.tmp")); len(tmps) != 0 {
		t.Fatalf("temporary files left: %v", tmps)
	}
	if u := c.Usage(); u != sum.Bytes {
		t.Fatalf("cache usage %d, want the epochs' %d bytes", u, sum.Bytes)
	}
}

// committedShort is how many rows the committed last shards lack of 16.
func committedShort(c *shardcache.Cache, l *Loader, d *dataset, n int) int {
	short := 0
	last := (n - 1) / 16
	for _, e := range crashEpochs {
		for _, s := range c.Shards(l.key(d, e)) {
			if s == last {
				short += 16 - (n - last*16)
			}
		}
	}
	return short
}
