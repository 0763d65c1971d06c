package shardcache

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, nil)
	k := testKey(3)
	const shard, size = 7, 100_000

	w, err := c.Create(k, shard, size, prepareSkeleton)
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if got := len(w.Data()); got != size {
		t.Fatalf("len(Data) = %d, want %d", got, size)
	}
	if !bytes.Equal(w.Data()[:len(skeleton)], skeleton) {
		t.Errorf("Data starts %q, want the skeleton prepare wrote", w.Data()[:len(skeleton)])
	}
	if got := c.Usage(); got != size {
		t.Errorf("Usage while writing = %d, want the reserved %d", got, size)
	}
	want := pattern(k, shard, size)
	copy(w.Data(), want)

	// Not visible before Commit.
	if c.Has(k, shard) {
		t.Error("Has before Commit = true")
	}
	if _, err := c.Open(k, shard); !errors.Is(err, ErrMiss) {
		t.Errorf("Open before Commit = %v, want ErrMiss", err)
	}
	if got := c.Shards(k); len(got) != 0 {
		t.Errorf("Shards before Commit = %v, want none", got)
	}
	if err := w.Commit(); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	if err := w.Commit(); err == nil {
		t.Error("second Commit = nil, want an error")
	}
	w.Abort() // after Commit: a no-op

	if !c.Has(k, shard) {
		t.Error("Has after Commit = false")
	}
	if got := c.Shards(k); !slices.Equal(got, []int{shard}) {
		t.Errorf("Shards = %v, want [%d]", got, shard)
	}
	m, err := c.Open(k, shard)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	if !bytes.Equal(m.Data(), want) {
		t.Error("Open returned other bytes than were written")
	}
	m.Retain()
	m.Release()
	if !bytes.Equal(m.Data(), want) { // one reference left: still mapped
		t.Error("bytes changed after Retain+Release")
	}
	m.Release()

	name := fmt.Sprintf(`^e-[0-9a-f]{32}/shard-000007\.%08x\.arrow$`, checksum(want))
	if got := filesUnder(t, dir, "shard-"); len(got) != 1 || !regexp.MustCompile(name).MatchString(got[0]) {
		t.Errorf("shard files = %v, want one matching %s", got, name)
	}
	if got := filesUnder(t, dir, tmpSuffix); len(got) != 0 {
		t.Errorf("temporary files left: %v", got)
	}
	if got := c.Usage(); got != size {
		t.Errorf("Usage = %d, want %d", got, size)
	}
	eps := c.Epochs()
	if len(eps) != 1 || eps[0].Key != k || eps[0].Shards != 1 || eps[0].Bytes != size || eps[0].Pinned || eps[0].Evicting || eps[0].LastUsed.IsZero() {
		t.Errorf("Epochs = %+v, want one entry for %v with 1 shard of %d bytes", eps, k, size)
	}
	if c.Dir() != dir {
		t.Errorf("Dir = %q, want %q", c.Dir(), dir)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, nil)
	k := testKey(0)
	w, err := c.Create(k, 0, 4096, prepareSkeleton)
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	copy(w.Data(), pattern(k, 0, 4096))
	w.Abort()
	w.Abort()
	if err := w.Commit(); err == nil {
		t.Error("Commit after Abort = nil, want an error")
	}
	if c.Has(k, 0) || c.Usage() != 0 {
		t.Errorf("after Abort: Has = %v, Usage = %d; want false, 0", c.Has(k, 0), c.Usage())
	}
	if got := filesUnder(t, dir, "shard-"); len(got) != 0 {
		t.Errorf("files left after Abort: %v", got)
	}
}

func TestCreateErrors(t *testing.T) {
	tests := []struct {
		name    string
		shard   int
		size    int64
		prepare func(*os.File) error
		is      error // nil: only an error is wanted
	}{
		{name: "full disk in prepare", shard: 0, size: 4096, prepare: func(*os.File) error {
			return fmt.Errorf("write skeleton: %w", syscall.ENOSPC)
		}, is: syscall.ENOSPC},
		{name: "prepare writes past size", shard: 0, size: 4, prepare: prepareSkeleton},
		{name: "negative shard", shard: -1, size: 4096, prepare: prepareSkeleton},
		{name: "zero size", shard: 0, size: 0, prepare: prepareSkeleton},
		{name: "nil prepare", shard: 0, size: 4096, prepare: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := openCache(t, dir, nil)
			k := testKey(0)
			w, err := c.Create(k, tc.shard, tc.size, tc.prepare)
			if err == nil {
				w.Abort()
				t.Fatal("Create = nil error, want one")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Create = %v, want it to wrap %v", err, tc.is)
			}
			if c.Has(k, tc.shard) || c.Usage() != 0 {
				t.Errorf("after failed Create: Has = %v, Usage = %d; want false, 0", c.Has(k, tc.shard), c.Usage())
			}
			if got := filesUnder(t, dir, "shard-"); len(got) != 0 {
				t.Errorf("files left: %v", got)
			}
			// The cache still works.
			mustWrite(t, c, k, 1, 4096)
			if err := checkShard(c, k, 1, 4096); err != nil {
				t.Errorf("shard written after the failure: %v", err)
			}
		})
	}
}

func TestCorruptShard(t *testing.T) {
	tests := []struct {
		name    string
		reopen  bool // damage between Close and Open (else after one verified Open)
		damage  func(path string) error
		corrupt bool // Open must report ErrCorrupt (else it still verifies)
	}{
		{name: "flipped byte", reopen: true, corrupt: true, damage: func(path string) error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, 5000); err != nil {
				return err
			}
			b[0] ^= 0x40
			_, err = f.WriteAt(b, 5000)
			return err
		}},
		{name: "truncated before restart", reopen: true, corrupt: true, damage: func(path string) error {
			return os.Truncate(path, 10_000)
		}},
		{name: "emptied", reopen: true, corrupt: true, damage: func(path string) error {
			return os.Truncate(path, 0)
		}},
		{name: "truncated while running", reopen: false, corrupt: true, damage: func(path string) error {
			return os.Truncate(path, 10_000)
		}},
		{name: "untouched", reopen: true, corrupt: false, damage: func(string) error { return nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			k := testKey(1)
			const size = 20_000
			c, err := Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			mustWrite(t, c, k, 0, size)
			mustWrite(t, c, k, 1, size)
			if tc.reopen {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			} else if err := checkShard(c, k, 0, size); err != nil {
				t.Fatal(err)
			}
			files := filesUnder(t, dir, "shard-000000")
			if len(files) != 1 {
				t.Fatalf("shard 0 files = %v, want 1", files)
			}
			if err := tc.damage(filepath.Join(dir, files[0])); err != nil {
				t.Fatal(err)
			}
			if tc.reopen {
				c = openCache(t, dir, nil)
			} else {
				t.Cleanup(func() { _ = c.Close() })
			}

			err = checkShard(c, k, 0, size)
			if !tc.corrupt {
				if err != nil {
					t.Fatalf("Open of an intact shard = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			if got := filesUnder(t, dir, "shard-000000"); len(got) != 0 {
				t.Errorf("corrupt file not removed: %v", got)
			}
			if c.Has(k, 0) {
				t.Error("Has(corrupt shard) = true after Open found it corrupt")
			}
			if _, err := c.Open(k, 0); !errors.Is(err, ErrMiss) {
				t.Errorf("second Open = %v, want ErrMiss", err)
			}
			if got := testutil.ToFloat64(c.m.corrupt); got != 1 {
				t.Errorf("corrupt counter = %v, want 1", got)
			}
			if got := c.Usage(); got != size {
				t.Errorf("Usage = %d, want %d (the intact shard)", got, size)
			}
			if err := checkShard(c, k, 1, size); err != nil {
				t.Errorf("intact neighbour: %v", err)
			}
			// Recompute: the caller writes it again.
			mustWrite(t, c, k, 0, size)
			if err := checkShard(c, k, 0, size); err != nil {
				t.Errorf("rewritten shard: %v", err)
			}
		})
	}
}

// TestRetiredEvictedFirst: over budget, a retired epoch goes before the
// least recently used one, until a use makes it an ordinary epoch again.
func TestRetiredEvictedFirst(t *testing.T) {
	const size = 10_000
	c := openCache(t, t.TempDir(), &Options{Budget: 3 * size})
	for e := range 3 {
		mustWrite(t, c, testKey(e), 0, size)
	}
	epochs := func() []int {
		var out []int
		for _, e := range c.Epochs() {
			out = append(out, e.Key.Epoch)
		}
		return out
	}
	c.Retire(testKey(2)) // the most recently used
	c.Retire(testKey(9)) // absent: nothing
	if info := c.Epochs(); !info[2].Retired || info[0].Retired {
		t.Fatalf("Epochs after Retire = %+v", info)
	}
	mustWrite(t, c, testKey(3), 0, size)
	if got := epochs(); !slices.Equal(got, []int{0, 1, 3}) {
		t.Errorf("epochs after eviction = %v, want the retired epoch 2 gone: [0 1 3]", got)
	}
	c.Retire(testKey(0))
	if err := checkShard(c, testKey(0), 0, size); err != nil { // used again: no longer retired
		t.Fatal(err)
	}
	mustWrite(t, c, testKey(4), 0, size)
	if got := epochs(); !slices.Equal(got, []int{0, 3, 4}) {
		t.Errorf("epochs after eviction = %v, want the least recently used epoch 1 gone: [0 3 4]", got)
	}
}

func TestBudgetEvictsLeastRecentlyUsed(t *testing.T) {
	dir := t.TempDir()
	const size = 10_000
	c := openCache(t, dir, &Options{Budget: 3 * size})
	for e := range 3 {
		mustWrite(t, c, testKey(e), 0, size)
	}
	unpin := c.Pin(testKey(0)) // oldest, but pinned
	defer unpin()
	held, err := c.Open(testKey(2), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkShard(c, testKey(1), 0, size); err != nil { // 2 is now the LRU unpinned
		t.Fatal(err)
	}

	mustWrite(t, c, testKey(3), 0, size)
	var keys []int
	for _, e := range c.Epochs() {
		keys = append(keys, e.Key.Epoch)
	}
	if !slices.Equal(keys, []int{0, 1, 3}) {
		t.Errorf("epochs after eviction = %v, want [0 1 3]", keys)
	}
	if got := c.Usage(); got != 3*size {
		t.Errorf("Usage = %d, want %d", got, 3*size)
	}
	if got := testutil.ToFloat64(c.m.evictions); got != 1 {
		t.Errorf("evictions = %v, want 1", got)
	}
	if got := filesUnder(t, dir, testKey(2).dirName()); len(got) != 0 {
		t.Errorf("evicted epoch still on disk: %v", got)
	}
	// A mapping of an evicted shard stays readable until released.
	if !bytes.Equal(held.Data(), pattern(testKey(2), 0, size)) {
		t.Error("held mapping changed by eviction")
	}
	held.Release()

	// Same key being written is never a victim; pinned epochs never are.
	unpin1 := c.Pin(testKey(1))
	defer unpin1()
	if err := writeShard(c, testKey(3), 1, size); !errors.Is(err, ErrBudget) {
		t.Errorf("Create needing to evict pinned or own epochs = %v, want ErrBudget", err)
	}
	if err := writeShard(c, testKey(4), 0, 4*size); !errors.Is(err, ErrBudget) {
		t.Errorf("Create larger than the budget = %v, want ErrBudget", err)
	}
	if got := len(c.Epochs()); got != 3 {
		t.Errorf("a failed Create evicted epochs: %d left, want 3", got)
	}
	unpin1()
	mustWrite(t, c, testKey(3), 1, size) // now epoch 1 may go
	if c.Has(testKey(1), 0) || !c.Has(testKey(0), 0) {
		t.Errorf("Has(1) = %v, Has(0) = %v; want false, true", c.Has(testKey(1), 0), c.Has(testKey(0), 0))
	}
	if got := c.Budget(); got != 3*size {
		t.Errorf("Budget = %d", got)
	}
}

func TestEvictPinned(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, nil)
	k := testKey(5)
	const size = 8192
	mustWrite(t, c, k, 0, size)
	unpinA, unpinB := c.Pin(k), c.Pin(k)
	if what, err := c.Evict(k); err != nil || what != Deferred {
		t.Fatalf("Evict of a pinned epoch = %v, %v; want deferred", what, err)
	}
	eps := c.Epochs()
	if len(eps) != 1 || !eps[0].Evicting || !eps[0].Pinned {
		t.Fatalf("Epochs after Evict of a pinned epoch = %+v, want one evicting, pinned", eps)
	}
	if err := checkShard(c, k, 0, size); err != nil {
		t.Errorf("evicting epoch no longer readable: %v", err)
	}
	m, err := c.Open(k, 0)
	if err != nil {
		t.Fatal(err)
	}
	unpinA()
	unpinA() // idempotent: must not drop B's pin
	if !c.Has(k, 0) {
		t.Fatal("epoch freed while still pinned")
	}
	unpinB()
	if c.Has(k, 0) || len(c.Epochs()) != 0 || c.Usage() != 0 {
		t.Errorf("after last unpin: Has = %v, Epochs = %+v, Usage = %d; want freed", c.Has(k, 0), c.Epochs(), c.Usage())
	}
	if got := filesUnder(t, dir, "shard-"); len(got) != 0 {
		t.Errorf("files left: %v", got)
	}
	if got := filesUnder(t, dir, trashPrefix); len(got) != 0 {
		t.Errorf("trash left: %v", got)
	}
	if !bytes.Equal(m.Data(), pattern(k, 0, size)) {
		t.Error("mapping changed by eviction")
	}
	m.Release()

	// Unpinned: removed at once; absent: nothing to do.
	mustWrite(t, c, k, 0, size)
	if what, err := c.Evict(k); err != nil || what != Evicted {
		t.Fatalf("Evict of an idle epoch = %v, %v; want evicted", what, err)
	}
	if c.Has(k, 0) || len(c.Epochs()) != 0 {
		t.Error("unpinned epoch not removed by Evict")
	}
	if what, err := c.Evict(k); err != nil || what != NotCached {
		t.Errorf("Evict of an epoch just evicted = %v, %v; want not cached", what, err)
	}
	if what, err := c.Evict(testKey(99)); err != nil || what != NotCached {
		t.Errorf("Evict(absent) = %v, %v; want not cached", what, err)
	}
}

func TestRestart(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	c, err := Open(dir, &Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for e := range 2 {
		for s := range 3 {
			mustWrite(t, c, testKey(e), s, shardSize(s))
		}
	}
	before := c.Epochs()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := c.Open(testKey(0), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Create(testKey(0), 9, 10, prepareSkeleton); !errors.Is(err, ErrClosed) {
		t.Errorf("Create after Close = %v, want ErrClosed", err)
	}

	c = openCache(t, dir, &Options{Registerer: reg}) // metrics were unregistered by Close
	after := c.Epochs()
	if len(after) != 2 {
		t.Fatalf("Epochs after restart = %+v, want 2", after)
	}
	for i, e := range after {
		if e.Key != before[i].Key || e.Shards != 3 || e.Bytes != before[i].Bytes || e.LastUsed.IsZero() {
			t.Errorf("epoch %d after restart = %+v, before %+v", i, e, before[i])
		}
		if got := c.Shards(e.Key); !slices.Equal(got, []int{0, 1, 2}) {
			t.Errorf("Shards(%v) = %v", e.Key, got)
		}
		for s := range 3 {
			if err := checkShard(c, e.Key, s, shardSize(s)); err != nil {
				t.Errorf("shard %d of %v after restart: %v", s, e.Key, err)
			}
		}
	}
	if got, want := c.Usage(), 2*(shardSize(0)+shardSize(1)+shardSize(2)); got != want {
		t.Errorf("Usage after restart = %d, want %d", got, want)
	}
	if got := testutil.ToFloat64(c.m.hits); got != 6 {
		t.Errorf("hits = %v, want 6", got)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c2, err := Open(dir, nil); !errors.Is(err, ErrLocked) {
		if c2 != nil {
			c2.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	c2.Close()
}

func TestOpenCleansLeftovers(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := testKey(0)
	mustWrite(t, c, k, 0, 4096)
	w, err := c.Create(k, 1, 4096, prepareSkeleton) // in flight when the process "dies"
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	epDir := filepath.Join(dir, k.dirName())
	leftovers := []string{
		filepath.Join(epDir, "shard-000002.123456.tmp"),
		filepath.Join(epDir, "meta.json.99.tmp"),
		filepath.Join(dir, trashPrefix+"e-x-1", "shard-000000.00000000.arrow"),
		filepath.Join(dir, testKey(7).dirName(), "shard-000000.00000000.arrow"), // no meta.json
	}
	for _, p := range leftovers {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	foreign := filepath.Join(dir, "README")
	if err := os.WriteFile(foreign, []byte("not ours"), 0o644); err != nil {
		t.Fatal(err)
	}

	c = openCache(t, dir, nil)
	if got := filesUnder(t, dir, tmpSuffix); len(got) != 0 {
		t.Errorf("temporary files after Open: %v", got)
	}
	for _, p := range leftovers[2:] {
		if _, err := os.Stat(filepath.Dir(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open (err %v)", filepath.Dir(p), err)
		}
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("Open removed a file that is not its own: %v", err)
	}
	if got := c.Shards(k); !slices.Equal(got, []int{0}) {
		t.Errorf("Shards = %v, want [0]", got)
	}
	if err := w.Commit(); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit of a writer of a closed cache = %v, want ErrClosed", err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := openCache(t, t.TempDir(), &Options{Registerer: reg})
	k := testKey(0)
	mustWrite(t, c, k, 0, 1000)
	mustWrite(t, c, k, 1, 3000)
	_ = checkShard(c, k, 0, 1000)
	_ = checkShard(c, k, 0, 1000)
	_, _ = c.Open(k, 5)
	want := `
# HELP loaderd_cache_bytes Bytes of committed shards plus space reserved by shards being written.
# TYPE loaderd_cache_bytes gauge
loaderd_cache_bytes 4000
# HELP loaderd_cache_checksums_total Shards read and checksummed before their first use (once per file per boot).
# TYPE loaderd_cache_checksums_total counter
loaderd_cache_checksums_total 1
# HELP loaderd_cache_shard_hits_total Shard opens that found a committed shard (the loader's loaderd_cache_hits_total counts rows).
# TYPE loaderd_cache_shard_hits_total counter
loaderd_cache_shard_hits_total 2
# HELP loaderd_cache_shard_misses_total Shard opens that found no committed shard (the loader's loaderd_cache_misses_total counts rows).
# TYPE loaderd_cache_shard_misses_total counter
loaderd_cache_shard_misses_total 1
# HELP loaderd_cache_shards_written_total Shards committed to the cache.
# TYPE loaderd_cache_shards_written_total counter
loaderd_cache_shards_written_total 2
`
	if err := testutil.GatherAndCompare(reg, bytes.NewBufferString(want),
		"loaderd_cache_bytes", "loaderd_cache_checksums_total", "loaderd_cache_shard_hits_total", "loaderd_cache_shard_misses_total", "loaderd_cache_shards_written_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 8 {
		t.Errorf("gathered %d series (%v), want 8", n, err)
	}
	if _, err := Open(t.TempDir(), &Options{Registerer: reg}); err == nil {
		t.Error("second cache on one registry: Open = nil error, want a registration error")
	}
	if _, err := Open(t.TempDir(), &Options{Budget: -1}); err == nil {
		t.Error("Open with a negative budget = nil error")
	}
}

// TestWriteAt fills half a shard through the mapping and half through
// WriteAt: both land in the same bytes, visible in Data at once and in
// the committed file.
func TestWriteAt(t *testing.T) {
	c := openCache(t, t.TempDir(), nil)
	k, size := testKey(0), shardSize(3)
	want := pattern(k, 3, size)
	w, err := c.Create(k, 3, size, prepareSkeleton)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	half := size / 2
	copy(w.Data()[:half], want[:half])
	if n, err := w.WriteAt(want[half:], half); err != nil || n != int(size-half) {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	if !bytes.Equal(w.Data(), want) {
		t.Fatal("Data does not show what WriteAt wrote")
	}
	for _, bad := range []struct{ off, n int64 }{{-1, 1}, {size, 1}, {size - 1, 2}} {
		if _, err := w.WriteAt(make([]byte, bad.n), bad.off); err == nil {
			t.Errorf("WriteAt(%d bytes at %d) of a %d-byte shard succeeded", bad.n, bad.off, size)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(want[:1], 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Commit = %v; want ErrClosed", err)
	}
	if err := checkShard(c, k, 3, size); err != nil {
		t.Fatal(err)
	}
}

// TestVerifiedAcrossRestart: a shard checksummed once is not read again by
// a restarted process of the same boot, but is after a reboot (a new boot
// id) or when the file was rewritten since; a corrupt file is still caught.
func TestVerifiedAcrossRestart(t *testing.T) {
	boot := filepath.Join(t.TempDir(), "boot_id")
	old := bootIDPath
	bootIDPath = boot
	t.Cleanup(func() { bootIDPath = old })
	setBoot := func(id string) {
		if err := os.WriteFile(boot, []byte(id+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checksums := func(c *Cache) int { return int(testutil.ToFloat64(c.m.checksums)) }
	dir := t.TempDir()
	k, size := testKey(0), shardSize(0)
	setBoot("boot-a")
	c := openCache(t, dir, nil)
	mustWrite(t, c, k, 0, size)
	mustWrite(t, c, k, 1, size)
	for range 2 {
		if err := checkShard(c, k, 0, size); err != nil {
			t.Fatal(err)
		}
	}
	if n := checksums(c); n != 1 {
		t.Fatalf("first process: %d checksums, want 1", n)
	}
	c.Close()

	restart := func(what string, want int) *Cache {
		t.Helper()
		c := openCache(t, dir, nil)
		if err := checkShard(c, k, 0, size); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := checksums(c); n != want {
			t.Fatalf("%s: %d checksums of shard 0, want %d", what, n, want)
		}
		c.Close()
		return c
	}
	restart("restart, same boot", 0)
	setBoot("boot-b")
	restart("after a reboot", 1)
	restart("restart after the reboot", 0)

	// Rewrite shard 0 with other bytes: the stamp no longer matches.
	files, _ := filepath.Glob(filepath.Join(dir, "e-*", "shard-000000.*.arrow"))
	if len(files) != 1 {
		t.Fatalf("shard 0 files: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(files[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	c = openCache(t, dir, nil)
	if _, err := c.Open(k, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("rewritten shard after restart: Open = %v, want ErrCorrupt", err)
	}
}

// openFiles counts the process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(fds)
}

// TestWritersBoundDescriptors: many writers at once (a cold shuffled
// stream over small shards) hold at most MaxOpenWriters descriptors; the
// others open their file for each write, and every shard commits intact.
func TestWritersBoundDescriptors(t *testing.T) {
	const writers, kept = 12, 3
	c := openCache(t, t.TempDir(), &Options{MaxOpenWriters: kept})
	k := testKey(1)
	base := openFiles(t)
	ws := make([]*Writer, writers)
	for s := range ws {
		var err error
		if ws[s], err = c.Create(k, s, shardSize(s), prepareSkeleton); err != nil {
			t.Fatal(err)
		}
		defer ws[s].Abort()
	}
	if got := openFiles(t) - base; got > kept {
		t.Fatalf("%d writers hold %d descriptors; want at most %d", writers, got, kept)
	}
	for s, w := range ws {
		want := pattern(k, s, shardSize(s))
		if _, err := w.WriteAt(want[len(skeleton):], int64(len(skeleton))); err != nil {
			t.Fatalf("WriteAt of writer %d: %v", s, err)
		}
	}
	if got := openFiles(t) - base; got > kept {
		t.Fatalf("after writing, %d writers hold %d descriptors; want at most %d", writers, got, kept)
	}
	for s, w := range ws {
		if err := w.Commit(); err != nil {
			t.Fatalf("Commit of writer %d: %v", s, err)
		}
		if err := checkShard(c, k, s, shardSize(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got := openFiles(t) - base; got > 0 {
		t.Fatalf("%d descriptors left open after every commit", got)
	}
	if n := c.openWriters.Load(); n != 0 {
		t.Fatalf("%d descriptor slots still taken after every commit", n)
	}
}
