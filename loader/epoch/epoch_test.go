package epoch_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// newEpoch returns an epoch of n samples of 2×2 RGB images in shards of
// size rows, over cache.
func newEpoch(t testing.TB, cache *shardcache.Cache, commits *epoch.Commits, n, size int) *epoch.Epoch {
	t.Helper()
	schema, err := arrowio.NewSchema(arrowio.ImageSpec(2, 2, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := epoch.New(&epoch.Options{
		Cache: cache, Commits: commits, Schema: schema,
		Key:     shardcache.Key{Dataset: "d", Pipeline: "p", Seed: 1, Epoch: 3},
		Samples: n, ShardSize: size,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func openCache(t testing.TB) *shardcache.Cache {
	t.Helper()
	c, err := shardcache.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// row is the image of sample i.
func row(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 12) }

// fillShard claims, stores and finishes every row of sh.
func fillShard(t *testing.T, sh *epoch.Shard) {
	t.Helper()
	for p := range sh.Rows() {
		claimed, err := sh.Request(p, false)
		if err != nil || !claimed {
			t.Fatalf("Request(%d) = %v, %v; want a claim", p, claimed, err)
		}
		if err := sh.Store(p, row(sh.Lo()+p)); err != nil {
			t.Fatal(err)
		}
		sh.Finish(p, uint64(sh.Lo()+p), int64(p), nil)
	}
}

// waitCommitted waits until sh is committed, failing on an error.
func waitCommitted(t *testing.T, sh *epoch.Shard) {
	t.Helper()
	for {
		committed, claims, wait, err := sh.Settle()
		if err != nil || len(claims) != 0 {
			t.Fatalf("Settle = %v, claims %v", err, claims)
		}
		if committed {
			return
		}
		<-wait
	}
}

// TestLifeCycle takes a shard from absent to committed, then serves its
// rows from the cache through a later Epoch.
func TestLifeCycle(t *testing.T) {
	cache, commits := openCache(t), epoch.NewCommits()
	ep := newEpoch(t, cache, commits, 5, 3)
	if len(ep.Shards()) != 2 || ep.Shards()[1].Rows() != 2 || ep.Shards()[1].Lo() != 3 {
		t.Fatalf("shards %d, last of %d rows from %d; want 2, 2 rows from 3", len(ep.Shards()), ep.Shards()[1].Rows(), ep.Shards()[1].Lo())
	}
	sh, p := ep.ShardOf(4)
	if sh != ep.Shards()[1] || p != 1 {
		t.Fatalf("ShardOf(4) = shard from %d, row %d", sh.Lo(), p)
	}
	if ok, err := sh.Committed(); ok || err != nil {
		t.Fatalf("Committed before any row = %v, %v", ok, err)
	}
	// A claimed row is nobody else's; a ready row is served from the writer.
	if claimed, err := sh.Request(0, false); !claimed || err != nil {
		t.Fatalf("Request = %v, %v; want a claim", claimed, err)
	}
	if s, err := sh.Acquire(0, true, true); err != nil || s.Claimed || s.Ready || s.Wait == nil {
		t.Fatalf("Acquire of a claimed row = %+v, %v; want a wait", s, err)
	}
	if err := sh.Store(0, row(3)); err != nil {
		t.Fatal(err)
	}
	sh.Finish(0, 3, 30, nil)
	s, err := sh.Acquire(0, true, true)
	if err != nil || !s.Ready || s.Cached || s.Index != 3 || s.Label != 30 || !bytes.Equal(s.Img, row(3)) {
		t.Fatalf("Acquire of a written row = %+v, %v", s, err)
	}
	// The last row lands while a batch holds the writer: the commit waits
	// for the batch.
	if claimed, _ := sh.Request(1, false); !claimed {
		t.Fatal("row 1 not claimed")
	}
	if err := sh.Store(1, row(4)); err != nil {
		t.Fatal(err)
	}
	sh.Finish(1, 4, 40, nil)
	if n := len(cache.Shards(ep.Key())); n != 0 {
		t.Fatalf("%d shards committed while a batch reads the writer", n)
	}
	s.Release()
	waitCommitted(t, sh)
	if got := cache.Shards(ep.Key()); len(got) != 1 || got[0] != 1 {
		t.Fatalf("committed shards %v, want [1]", got)
	}
	ep.Close()

	// A later user of the epoch maps the committed shard.
	ep2 := newEpoch(t, cache, commits, 5, 3)
	defer ep2.Close()
	sh2, _ := ep2.ShardOf(4)
	s, err = sh2.Acquire(1, true, true)
	if err != nil || !s.Ready || !s.Cached || s.Index != 4 || s.Label != 40 || !bytes.Equal(s.Img, row(4)) {
		t.Fatalf("Acquire of a committed row = %+v, %v", s, err)
	}
	s.Release()
	if claimed, err := sh2.Request(0, true); claimed || err != nil {
		t.Fatalf("Request of a committed row = %v, %v; want no claim", claimed, err)
	}
}

// TestAbandonAndFail gives a claim back, fails a row for now (a read
// error), then for good (undecodable under the fail policy): the first two
// are claimable again, the last is an error to every caller.
func TestAbandonAndFail(t *testing.T) {
	ep := newEpoch(t, openCache(t), epoch.NewCommits(), 2, 2)
	defer ep.Close()
	sh := ep.Shards()[0]
	if claimed, _ := sh.Request(0, false); !claimed {
		t.Fatal("row 0 not claimed")
	}
	sh.Finish(0, 0, 0, fmt.Errorf("left: %w", epoch.ErrAbandoned))
	if claimed, err := sh.Request(0, false); !claimed || err != nil {
		t.Fatalf("Request after abandon = %v, %v; want a claim", claimed, err)
	}
	// A failed read is nobody's business but its claimer's: the row is
	// absent again, and the shard keeps no trace of the error.
	sh.Finish(0, 0, 0, errors.New("read x.jpg: input/output error"))
	if claimed, err := sh.Request(0, false); !claimed || err != nil {
		t.Fatalf("Request after a failed read = %v, %v; want a claim", claimed, err)
	}
	bad := fmt.Errorf("x.jpg: %w", service.ErrDataLoss)
	sh.Finish(0, 0, 0, bad)
	if _, err := sh.Request(0, false); !errors.Is(err, bad) {
		t.Fatalf("Request of a failed row = %v, want %v", err, bad)
	}
	if _, err := sh.Acquire(0, true, true); !errors.Is(err, bad) {
		t.Fatalf("Acquire of a failed row = %v, want %v", err, bad)
	}
	if _, _, _, err := sh.Settle(); !errors.Is(err, bad) {
		t.Fatalf("Settle with a failed row = %v, want %v", err, bad)
	}
}

// TestCloseKeepsPartial closes an epoch with a partial shard: the shard is
// kept (no writer reservation, its bytes on disk, nothing committed), and
// the next Epoch of the key finds its ready rows again, each checked:
// a row whose bytes changed on disk is computed again, never served.
func TestCloseKeepsPartial(t *testing.T) {
	cache := openCache(t)
	var suspended, committed []int
	resumed := 0
	hooks := &epoch.Hooks{
		Suspended: func(s int) { suspended = append(suspended, s) },
		Committed: func(s int) { committed = append(committed, s) },
		Resumed:   func(n int) { resumed += n },
	}
	schema, err := arrowio.NewSchema(arrowio.ImageSpec(2, 2, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	open := func() *epoch.Epoch {
		ep, err := epoch.New(&epoch.Options{
			Cache: cache, Commits: epoch.NewCommits(), Schema: schema, Hooks: hooks,
			Key: shardcache.Key{Dataset: "d", Pipeline: "p", Seed: 1, Epoch: 3}, Samples: 4, ShardSize: 4,
		})
		if err != nil {
			t.Fatal(err)
		}
		return ep
	}
	ep := open()
	sh := ep.Shards()[0]
	for _, p := range []int{0, 2} {
		if claimed, _ := sh.Request(p, false); !claimed {
			t.Fatalf("row %d not claimed", p)
		}
		if err := sh.Store(p, row(p)); err != nil {
			t.Fatal(err)
		}
		sh.Finish(p, uint64(p), int64(10+p), nil)
	}
	if ep.Reserved() == 0 {
		t.Fatal("a writer in production reserves no bytes")
	}
	ep.Close()
	if ep.Reserved() != 0 || len(cache.Shards(ep.Key())) != 0 || cache.Usage() == 0 || len(suspended) != 1 {
		t.Fatalf("after Close: reserved %d, usage %d, shards %v, suspended %v; want the partial shard kept", ep.Reserved(), cache.Usage(), cache.Shards(ep.Key()), suspended)
	}
	// Change row 2's bytes on disk behind the cache's back.
	m, _, err := cache.OpenPartial(ep.Key(), 0)
	if err != nil {
		t.Fatal(err)
	}
	m.Release()
	files, _ := filepath.Glob(filepath.Join(cache.Dir(), ep.Key().Name(), "shard-000000.partial"))
	if len(files) != 1 {
		t.Fatalf("partial file: %v", files)
	}
	lay, _ := arrowio.NewShardLayout(schema, 4)
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{99}, lay.ImageOffset+2*int64(lay.RowBytes))
	f.Close()

	ep = open()
	sh = ep.Shards()[0]
	s, err := sh.Acquire(0, true, true)
	if err != nil || !s.Ready || !bytes.Equal(s.Img, row(0)) || s.Index != 0 || s.Label != 10 {
		t.Fatalf("row 0 after reopening: %+v, %v; want it ready from disk", s, err)
	}
	s.Release()
	if resumed != 1 {
		t.Errorf("%d rows resumed; want 1 (row 2 changed on disk)", resumed)
	}
	for _, p := range []int{1, 2, 3} {
		claimed, err := sh.Request(p, false)
		if err != nil || !claimed {
			t.Fatalf("row %d after reopening: claimed %v, %v; want a claim", p, claimed, err)
		}
		sh.Store(p, row(p))
		sh.Finish(p, uint64(p), int64(10+p), nil)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(cache.Shards(ep.Key())) != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ep.Close()
	if len(cache.Shards(ep.Key())) != 1 {
		t.Fatal("the completed shard was not committed")
	}
	if got := cache.Epochs(); len(got) != 1 || got[0].Partial != 0 {
		t.Errorf("Epochs = %+v; want the shard committed, no partial left", got)
	}
}

// TestWaitForPendingCommit: a second Epoch of the same key, opened while
// a complete shard of the first is committing, waits for that commit
// instead of claiming the rows again.
func TestWaitForPendingCommit(t *testing.T) {
	cache, commits := openCache(t), epoch.NewCommits()
	ep := newEpoch(t, cache, commits, 3, 3)
	ep2 := newEpoch(t, cache, commits, 3, 3)
	defer ep2.Close()
	fillShard(t, ep.Shards()[0])
	ep.Close() // the complete shard still commits
	waitCommitted(t, ep2.Shards()[0])
	commits.Wait()
	if got := cache.Shards(ep.Key()); len(got) != 1 {
		t.Fatalf("committed shards %v, want [0]", got)
	}
	s, err := ep2.Shards()[0].Acquire(2, false, true)
	if err != nil || !s.Ready || !bytes.Equal(s.Img, row(2)) {
		t.Fatalf("Acquire after the commit = %+v, %v", s, err)
	}
	s.Release()
}

func TestNewInvalid(t *testing.T) {
	cache := openCache(t)
	schema, err := arrowio.NewSchema(arrowio.ImageSpec(2, 2, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts epoch.Options
	}{
		{name: "no cache", opts: epoch.Options{Commits: epoch.NewCommits(), Schema: schema, Samples: 1, ShardSize: 1}},
		{name: "no commits", opts: epoch.Options{Cache: cache, Schema: schema, Samples: 1, ShardSize: 1}},
		{name: "no schema", opts: epoch.Options{Cache: cache, Commits: epoch.NewCommits(), Samples: 1, ShardSize: 1}},
		{name: "no samples", opts: epoch.Options{Cache: cache, Commits: epoch.NewCommits(), Schema: schema, ShardSize: 1}},
		{name: "no shard size", opts: epoch.Options{Cache: cache, Commits: epoch.NewCommits(), Schema: schema, Samples: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := epoch.New(&tc.opts); !errors.Is(err, epoch.ErrOptions) {
				t.Fatalf("New = %v, want ErrOptions", err)
			}
		})
	}
}

// TestCheckpoint: while a shard is written, every quarter of it (at least
// 64 rows) its ready rows are journaled, so a process killed then keeps
// them: the journal on disk names them before the epoch is closed.
func TestCheckpoint(t *testing.T) {
	cache := openCache(t)
	ep := newEpoch(t, cache, epoch.NewCommits(), 256, 256)
	sh := ep.Shards()[0]
	for p := range 70 {
		if claimed, _ := sh.Request(p, false); !claimed {
			t.Fatalf("row %d not claimed", p)
		}
		sh.Store(p, row(p))
		sh.Finish(p, uint64(p), int64(p), nil)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, journal, err := cache.OpenPartial(ep.Key(), 0)
		if err == nil {
			m.Release()
			rows, err := epoch.DecodeJournal(journal)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) < 64 {
				t.Fatalf("checkpoint journal names %d rows; want at least 64", len(rows))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no journal while the shard is written: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	ep.Close()
}

// TestCommitChecksum checks that a committed shard's file is named with the
// CRC-32C of its bytes: the commit joins the rows' checksums rather than
// reading the rows again.
func TestCommitChecksum(t *testing.T) {
	dir := t.TempDir()
	cache, err := shardcache.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	ep := newEpoch(t, cache, epoch.NewCommits(), 7, 4)
	for _, sh := range ep.Shards() {
		fillShard(t, sh)
		waitCommitted(t, sh)
	}
	ep.Close()
	names, err := filepath.Glob(filepath.Join(dir, "*", "shard-*.arrow"))
	if err != nil || len(names) != 2 {
		t.Fatalf("shard files %v, %v; want 2", names, err)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(".%08x.arrow", shardcache.Checksum(b)); !strings.HasSuffix(name, want) {
			t.Errorf("%s: want a name ending %s, the CRC-32C of its bytes", filepath.Base(name), want)
		}
	}
}
