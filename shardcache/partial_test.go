package shardcache

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// TestPartialSuspendResume: a shard suspended with a journal survives the
// cache's close and reopen, comes back to the next Create with its bytes
// and journal, and commits as any shard; a suspended shard is not
// committed, counts in the epoch's bytes and goes with the epoch.
func TestPartialSuspendResume(t *testing.T) {
	dir := t.TempDir()
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := testKey(1)
	skeleton := func(f *os.File) error { _, err := f.WriteString("HEAD"); return err }
	w, err := c.Create(k, 3, 64, skeleton)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Persistent() || w.Journal() != nil {
		t.Fatalf("fresh writer: persistent %v, journal %q", w.Persistent(), w.Journal())
	}
	if _, err := w.WriteAt([]byte("row-one!"), 8); err != nil {
		t.Fatal(err)
	}
	if err := w.Suspend([]byte("journal: row at 8")); err != nil {
		t.Fatal(err)
	}
	if c.Has(k, 3) {
		t.Error("a suspended shard counts as committed")
	}
	if eps := c.Epochs(); len(eps) != 1 || eps[0].Partial != 1 || eps[0].Bytes != 64 || eps[0].Shards != 0 {
		t.Errorf("Epochs = %+v; want one partial shard of 64 bytes", eps)
	}
	m, j, err := c.OpenPartial(k, 3)
	if err != nil || string(j) != "journal: row at 8" || !bytes.Equal(m.Data()[8:16], []byte("row-one!")) {
		t.Fatalf("OpenPartial = %q, %v", j, err)
	}
	m.Release()
	c.Close()

	c, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if eps := c.Epochs(); len(eps) != 1 || eps[0].Partial != 1 || c.Usage() != 64 {
		t.Errorf("after reopen: Epochs = %+v, usage %d", eps, c.Usage())
	}
	w, err = c.Create(k, 3, 64, skeleton)
	if err != nil {
		t.Fatal(err)
	}
	if string(w.Journal()) != "journal: row at 8" || !bytes.Equal(w.Data()[8:16], []byte("row-one!")) {
		t.Fatalf("resumed writer: journal %q, data %q", w.Journal(), w.Data()[:16])
	}
	// A second writer of the same shard meanwhile gets a temporary file.
	w2, err := c.Create(k, 3, 64, skeleton)
	if err != nil {
		t.Fatal(err)
	}
	if w2.Persistent() {
		t.Error("two writers hold the shard's partial file")
	}
	w2.Abort()
	copy(w.Data()[16:], "row-two!")
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if !c.Has(k, 3) {
		t.Fatal("not committed")
	}
	if got := append(filesUnder(t, dir, partialSuffix), filesUnder(t, dir, journalSuffix)...); len(got) != 0 {
		t.Errorf("after commit: %v left", got)
	}
	if _, _, err := c.OpenPartial(k, 3); !errors.Is(err, ErrMiss) {
		t.Errorf("OpenPartial of a committed shard: %v; want ErrMiss", err)
	}

	// An empty journal keeps nothing; eviction takes suspended shards along.
	w, _ = c.Create(k, 4, 64, skeleton)
	w.Suspend(nil)
	w, _ = c.Create(k, 5, 64, skeleton)
	w.Suspend([]byte("j"))
	if got := filesUnder(t, dir, partialSuffix); len(got) != 1 {
		t.Errorf("partial files %v; want shard 5's only", got)
	}
	if _, err := c.Evict(k); err != nil {
		t.Fatal(err)
	}
	if got := filesUnder(t, dir, partialSuffix); len(got) != 0 || c.Usage() != 0 {
		t.Errorf("after eviction: %v, usage %d", got, c.Usage())
	}
}

// TestEpochsCountWriting: a shard being written takes its full size in
// its epoch's Writing (as in Usage) until it commits, is suspended or
// aborted; Bytes then holds what stays on disk.
func TestEpochsCountWriting(t *testing.T) {
	c := openCache(t, t.TempDir(), nil)
	k := testKey(3)
	size0, size1 := shardSize(0), shardSize(1)
	w0, err := c.Create(k, 0, size0, prepareSkeleton)
	if err != nil {
		t.Fatal(err)
	}
	w1, err := c.Create(k, 1, size1, prepareSkeleton)
	if err != nil {
		t.Fatal(err)
	}
	info := func() EpochInfo {
		t.Helper()
		eps := c.Epochs()
		if len(eps) != 1 {
			t.Fatalf("Epochs = %+v, want one", eps)
		}
		return eps[0]
	}
	if got := info(); got.Bytes != 0 || got.Writing != size0+size1 || c.Usage() != size0+size1 {
		t.Fatalf("two shards being written: %+v, Usage %d; want Writing %d, Bytes 0", got, c.Usage(), size0+size1)
	}
	copy(w0.Data(), pattern(k, 0, size0))
	if err := w0.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := info(); got.Bytes != size0 || got.Writing != size1 {
		t.Fatalf("one committed, one written: %+v; want Bytes %d, Writing %d", got, size0, size1)
	}
	if err := w1.Suspend([]byte("journal")); err != nil {
		t.Fatal(err)
	}
	if got := info(); got.Bytes != size0+size1 || got.Writing != 0 || got.Partial != 1 {
		t.Fatalf("one committed, one suspended: %+v; want Bytes %d, Writing 0", got, size0+size1)
	}
	w2, err := c.Create(k, 2, shardSize(2), prepareSkeleton)
	if err != nil {
		t.Fatal(err)
	}
	w2.Abort()
	if got := info(); got.Writing != 0 || c.Usage() != size0+size1 {
		t.Fatalf("after an aborted writer: %+v, Usage %d; want Writing 0", got, c.Usage())
	}
}

// TestSuspendUnchanged: a writer whose journal is on disk (resumed with
// it, or checkpointed) is suspended with file and journal as they are,
// counted as a partial shard as Suspend counts it; one without a journal
// on disk keeps nothing and says so.
func TestSuspendUnchanged(t *testing.T) {
	c := openCache(t, t.TempDir(), nil)
	k := testKey(2)
	w, err := c.Create(k, 0, 64, prepareSkeleton)
	if err != nil {
		t.Fatal(err)
	}
	if w.Journaled() {
		t.Fatal("a fresh writer reports a journal on disk")
	}
	if err := w.SuspendUnchanged(); err == nil {
		t.Error("SuspendUnchanged of a writer with no journal on disk: no error")
	}
	if got := filesUnder(t, c.Dir(), partialSuffix); len(got) != 0 || c.Usage() != 0 {
		t.Fatalf("after SuspendUnchanged with no journal: %v, usage %d; want nothing kept", got, c.Usage())
	}

	w, _ = c.Create(k, 0, 64, prepareSkeleton)
	copy(w.Data()[8:], "row-one!")
	if err := w.Checkpoint([]byte("journal: row at 8")); err != nil || !w.Journaled() {
		t.Fatalf("Checkpoint = %v, Journaled %v", err, w.Journaled())
	}
	copy(w.Data()[16:], "row-two!") // named by no journal
	if err := w.SuspendUnchanged(); err != nil {
		t.Fatal(err)
	}
	if eps := c.Epochs(); len(eps) != 1 || eps[0].Partial != 1 || eps[0].Bytes != 64 || eps[0].Writing != 0 {
		t.Errorf("Epochs = %+v; want one partial shard of 64 bytes", eps)
	}
	w, err = c.Create(k, 0, 64, prepareSkeleton)
	if err != nil {
		t.Fatal(err)
	}
	if string(w.Journal()) != "journal: row at 8" || !w.Journaled() || !bytes.Equal(w.Data()[8:16], []byte("row-one!")) {
		t.Fatalf("resumed: journal %q (journaled %v), data %q", w.Journal(), w.Journaled(), w.Data()[:24])
	}
	if err := w.SuspendUnchanged(); err != nil {
		t.Fatal(err)
	}
	m, j, err := c.OpenPartial(k, 0)
	if err != nil || string(j) != "journal: row at 8" {
		t.Fatalf("OpenPartial = %q, %v", j, err)
	}
	m.Release()
}
