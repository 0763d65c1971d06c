package epoch_test

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/shardcache"
)

// partialFixture opens Epochs of one key over one cache, of n samples in
// one shard, and reads the shard's journal on disk.
type partialFixture struct {
	t                   *testing.T
	cache               *shardcache.Cache
	schema              *arrow.Schema
	n                   int
	suspended, resumed  int
	journal, partialDir string
}

func newPartialFixture(t *testing.T, n int) *partialFixture {
	t.Helper()
	schema, err := arrowio.NewSchema(arrowio.ImageSpec(2, 2, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &partialFixture{t: t, cache: openCache(t), schema: schema, n: n}
	k := shardcache.Key{Dataset: "d", Pipeline: "p", Seed: 1, Epoch: 3}
	f.partialDir = filepath.Join(f.cache.Dir(), k.Name())
	f.journal = filepath.Join(f.partialDir, "shard-000000.journal")
	return f
}

func (f *partialFixture) open() *epoch.Epoch {
	f.t.Helper()
	ep, err := epoch.New(&epoch.Options{
		Cache: f.cache, Commits: epoch.NewCommits(), Schema: f.schema,
		Hooks: &epoch.Hooks{
			Suspended: func(int) { f.suspended++ },
			Resumed:   func(n int) { f.resumed += n },
		},
		Key:     shardcache.Key{Dataset: "d", Pipeline: "p", Seed: 1, Epoch: 3},
		Samples: f.n, ShardSize: f.n,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return ep
}

// write claims, stores and finishes rows ps of sh.
func (f *partialFixture) write(sh *epoch.Shard, ps ...int) {
	f.t.Helper()
	for _, p := range ps {
		if claimed, err := sh.Request(p, false); !claimed || err != nil {
			f.t.Fatalf("Request(%d) = %v, %v; want a claim", p, claimed, err)
		}
		if err := sh.Store(p, row(p)); err != nil {
			f.t.Fatal(err)
		}
		sh.Finish(p, uint64(p), int64(10+p), nil)
	}
}

// journalFile returns the inode and modification time of the journal on
// disk: a journal written again (temporary file renamed over it) is a new
// inode.
func (f *partialFixture) journalFile() (ino uint64, mtime time.Time) {
	f.t.Helper()
	fi, err := os.Stat(f.journal)
	if err != nil {
		f.t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()
}

// journalRows returns the rows the journal on disk names.
func (f *partialFixture) journalRows() []int {
	f.t.Helper()
	b, err := os.ReadFile(f.journal)
	if err != nil {
		f.t.Fatal(err)
	}
	rows, err := epoch.DecodeJournal(b)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []int
	for _, r := range rows {
		out = append(out, r.Row)
	}
	slices.Sort(out)
	return out
}

// TestSuspendUnchanged: closing an Epoch whose partial shard has no row
// ready since its journal was written (resumed from it, served, closed)
// keeps the journal as it is: not written again, nor the file synced
// (Writer.SuspendUnchanged). A row written since, or a row of the journal
// that failed its check, makes the close write the journal again, naming
// exactly the rows ready; a row stored but given up unfinished is in no
// journal.
func TestSuspendUnchanged(t *testing.T) {
	f := newPartialFixture(t, 4)
	ep := f.open()
	f.write(ep.Shards()[0], 0, 2)
	ep.Close()
	ino, mtime := f.journalFile()
	if f.suspended != 1 || !slices.Equal(f.journalRows(), []int{0, 2}) {
		t.Fatalf("first close: suspended %d, journal %v; want 1, rows [0 2]", f.suspended, f.journalRows())
	}

	// Resumed, a row served, a row stored and given up: nothing new.
	ep = f.open()
	sh := ep.Shards()[0]
	s, err := sh.Acquire(0, true, true)
	if err != nil || !s.Ready {
		t.Fatalf("row 0 after reopening: %+v, %v; want it ready", s, err)
	}
	s.Release()
	if claimed, _ := sh.Request(3, false); !claimed {
		t.Fatal("row 3 not claimed")
	}
	if err := sh.Store(3, row(3)); err != nil {
		t.Fatal(err)
	}
	sh.Finish(3, 0, 0, epoch.ErrAbandoned)
	ep.Close()
	if ino2, mtime2 := f.journalFile(); ino2 != ino || !mtime2.Equal(mtime) {
		t.Errorf("closing with nothing new wrote the journal again (inode %d → %d, mtime %v → %v)", ino, ino2, mtime, mtime2)
	}
	if f.suspended != 2 || f.resumed != 2 {
		t.Errorf("suspended %d, resumed %d; want 2, 2 (the shard kept again)", f.suspended, f.resumed)
	}

	// The shard kept so resumes the same rows, and no other; a row written
	// now is journaled at the close.
	ep = f.open()
	sh = ep.Shards()[0]
	if claimed, err := sh.Request(3, false); !claimed || err != nil {
		t.Fatalf("row 3, given up unfinished: claimed %v, %v; want a claim", claimed, err)
	}
	if f.resumed != 4 {
		t.Errorf("resumed %d rows in all; want 4 (rows 0 and 2 twice)", f.resumed)
	}
	sh.Finish(3, 0, 0, epoch.ErrAbandoned)
	f.write(sh, 1)
	ep.Close()
	ino2, _ := f.journalFile()
	if ino2 == ino || !slices.Equal(f.journalRows(), []int{0, 1, 2}) {
		t.Errorf("closing with row 1 new: journal inode %d (was %d), rows %v; want it written again, rows [0 1 2]", ino2, ino, f.journalRows())
	}
	ep = f.open()
	s, err = ep.Shards()[0].Acquire(1, true, true)
	if err != nil || !s.Ready || s.Label != 11 {
		t.Fatalf("row 1 after reopening: %+v, %v; want it ready from disk", s, err)
	}
	s.Release()
	ep.Close()

	// Row 1's bytes changed on disk: it fails its check, and the close
	// writes a journal without it though no row is new.
	ino, _ = f.journalFile()
	lay, err := arrowio.NewShardLayout(f.schema, 4)
	if err != nil {
		t.Fatal(err)
	}
	pf, err := os.OpenFile(filepath.Join(f.partialDir, "shard-000000.partial"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pf.WriteAt([]byte{99}, lay.ImageOffset+int64(lay.RowBytes)); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	ep = f.open()
	ep.Shards()[0].Request(0, false) // looks the shard up: resumes it
	ep.Close()
	if ino2, _ := f.journalFile(); ino2 == ino || !slices.Equal(f.journalRows(), []int{0, 2}) {
		t.Errorf("closing after row 1 failed its check: journal inode %d (was %d), rows %v; want it written again, rows [0 2]", ino2, ino, f.journalRows())
	}
}

// TestSuspendAfterCheckpoint: a close right after a checkpoint, with no row
// ready since, keeps the checkpoint's journal as it is; one more row makes
// the close journal it.
func TestSuspendAfterCheckpoint(t *testing.T) {
	f := newPartialFixture(t, 256)
	for _, extra := range []int{0, 1} {
		ep := f.open()
		sh := ep.Shards()[0]
		lo := len(f.journalRowsOrNone())
		ps := make([]int, 64+extra) // 64 new rows: a checkpoint
		for i := range ps {
			ps[i] = lo + i
		}
		f.write(sh, ps...)
		waitFor(t, "the checkpoint's journal", func() bool { return len(f.journalRowsOrNone()) >= lo+64 })
		ino, _ := f.journalFile()
		ep.Close()
		ino2, _ := f.journalFile()
		want := lo + 64 + extra
		if got := f.journalRows(); len(got) != want {
			t.Fatalf("after the close: journal of %d rows; want %d", len(got), want)
		}
		if written := ino2 != ino; written != (extra > 0) {
			t.Errorf("%d rows ready since the checkpoint: journal written again at the close %v; want %v", extra, written, extra > 0)
		}
	}
}

// journalRowsOrNone is journalRows, or nil while there is no journal (or
// it is being replaced).
func (f *partialFixture) journalRowsOrNone() []int {
	b, err := os.ReadFile(f.journal)
	if err != nil {
		return nil
	}
	rows, err := epoch.DecodeJournal(b)
	if err != nil {
		return nil
	}
	out := make([]int, len(rows))
	for i, r := range rows {
		out[i] = r.Row
	}
	return out
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
