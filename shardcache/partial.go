package shardcache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Partial shards: a shard whose rows are not all written when its writer's
// owner leaves is kept, not thrown away. A node that serves only some ranks
// of a job never completes a shard, and what it computed must survive the
// end of a stream and a restart.
//
// A shard's writer owns the name shard-NNNNNN.partial in its epoch's
// directory (a second writer of the same shard at the same time, which the
// loader avoids, gets a temporary file as before). Suspend syncs the file,
// then writes the caller's journal, shard-NNNNNN.journal, atomically
// (temporary file, fsync, rename, directory fsync), and keeps both: the
// journal lists what the caller may trust in the file, so a row written
// after the last Suspend, or while the process was killed, is not in it.
// A caller with nothing new to name since its journal was written (the
// one Create found, or its last Checkpoint's) calls SuspendUnchanged
// instead, which keeps both as they are: no sync, no write.
// The next Create of the shard reopens the file and hands the journal back
// (Writer.Journal); the caller checks each row it names before serving it.
// Commit renames the partial file to the shard's final name and removes
// the journal; Abort removes both.
//
// A suspended partial shard counts in its epoch's bytes (and the budget) at
// its full size, and goes with its epoch when that is evicted. Open's scan
// keeps partial files and journals (a journal without its file, or beside a
// committed shard, is removed).

const (
	partialSuffix = ".partial"
	journalSuffix = ".journal"
)

func partialName(shard int) string { return fmt.Sprintf("%s%06d%s", shardPrefix, shard, partialSuffix) }
func journalName(shard int) string { return fmt.Sprintf("%s%06d%s", shardPrefix, shard, journalSuffix) }

// parsePartialName parses shard-NNNNNN<suffix>.
func parsePartialName(name, suffix string) (int, bool) {
	rest, ok1 := strings.CutPrefix(name, shardPrefix)
	num, ok2 := strings.CutSuffix(rest, suffix)
	if !ok1 || !ok2 || len(num) < 6 {
		return 0, false
	}
	n, err := strconv.ParseUint(num, 10, 31)
	return int(n), err == nil
}

// scanPartials drops, from an epoch being scanned, the partial files of
// committed shards (a process killed between a commit's rename and the
// journal's removal leaves none; an older loaderd may) and the journals
// without a partial file.
func (c *Cache) scanPartials(ep *epoch, journals []int) {
	for shard, size := range ep.partials {
		if _, done := ep.shards[shard]; done {
			_ = os.Remove(filepath.Join(ep.dir, partialName(shard)))
			_ = os.Remove(filepath.Join(ep.dir, journalName(shard)))
			delete(ep.partials, shard)
			ep.bytes -= size
		}
	}
	for _, shard := range journals {
		if _, ok := ep.partials[shard]; !ok {
			_ = os.Remove(filepath.Join(ep.dir, journalName(shard)))
		}
	}
}

// takePartialLocked gives a new writer of shard the partial file's name,
// unless another writer holds it; resume reports a suspended partial file
// of the same size to reopen, whose bytes move from the epoch's to the
// writer's reservation. The caller holds c.mu.
func (c *Cache) takePartialLocked(ep *epoch, shard int, size int64) (stable, resume bool) {
	if ep.stable[shard] {
		return false, false
	}
	ep.stable[shard] = true
	if old, ok := ep.partials[shard]; ok {
		delete(ep.partials, shard)
		ep.bytes -= old
		c.committed -= old
		resume = old == size
	}
	return true, resume
}

// dropPartialLocked undoes takePartialLocked for a writer that was not
// made: a suspended file taken back stays suspended. The caller holds c.mu.
func (c *Cache) dropPartialLocked(ep *epoch, shard int, resumed bool) {
	delete(ep.stable, shard)
	if resumed {
		ep.partials[shard] = 0
		// its size is unknown here only in form: resumed means equal to the
		// writer's size, which the caller did not reserve; recount from disk.
		if fi, err := os.Stat(filepath.Join(ep.dir, partialName(shard))); err == nil {
			ep.partials[shard] = fi.Size()
			ep.bytes += fi.Size()
			c.committed += fi.Size()
		} else {
			delete(ep.partials, shard)
		}
	}
}

// resume reopens the shard's partial file and its journal. It reports
// false, and no error, when the file cannot be reused (gone, or of another
// size): then open makes a fresh one.
func (w *Writer) resume() (bool, error) {
	path := filepath.Join(w.ep.dir, partialName(w.shard))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("shardcache: resume shard %d of %v: %w", w.shard, w.ep.key, err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != w.size {
		_ = f.Close()
		return false, nil
	}
	journal, err := os.ReadFile(filepath.Join(w.ep.dir, journalName(w.shard)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		_ = f.Close()
		return false, fmt.Errorf("shardcache: resume shard %d of %v: %w", w.shard, w.ep.key, err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(w.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = f.Close()
		return false, fmt.Errorf("shardcache: map shard %d of %v: %w", w.shard, w.ep.key, err)
	}
	w.tmp, w.data, w.journal, w.journaled = path, data, journal, journal != nil
	w.keepOrClose(f)
	return true, nil
}

// Journal returns the journal the last Suspend of this shard wrote, when
// Create reopened a partial shard; nil for a fresh file. The bytes of the
// rows it names are in Data, as they were when it was written, unless the
// machine crashed since: check them before use.
func (w *Writer) Journal() []byte { return w.journal }

// Persistent reports whether Suspend keeps the shard (the writer holds the
// shard's partial file) rather than discarding it.
func (w *Writer) Persistent() bool { return w.stable }

// Suspend ends the writer and keeps the partial shard for a later Create:
// it syncs the file, then writes journal atomically beside it. A writer
// that is not Persistent, or an empty journal, is aborted instead. After
// Suspend the writer is finished, as after Commit.
func (w *Writer) Suspend(journal []byte) error {
	if !w.stable || len(journal) == 0 {
		w.Abort()
		return nil
	}
	if !w.done.CompareAndSwap(false, true) {
		return fmt.Errorf("shardcache: suspend shard %d of %v: writer already finished", w.shard, w.ep.key)
	}
	_, err := w.sync(false) // a partial file's name has no checksum
	if err == nil {
		err = WriteAtomic(filepath.Join(w.ep.dir, journalName(w.shard)), journal)
	}
	if err != nil {
		_ = os.Remove(w.tmp)
		w.finish(true)
		return fmt.Errorf("shardcache: suspend shard %d of %v: %w", w.shard, w.ep.key, err)
	}
	w.keep()
	return nil
}

// Journaled reports whether the shard's journal is on disk: Create found
// it with the partial file (Journal), or a Checkpoint wrote it.
func (w *Writer) Journaled() bool { return w.journaled }

// SuspendUnchanged ends the writer and keeps the partial shard for a later
// Create, as Suspend does, but leaves the file and its journal on disk as
// they are: no sync, no journal written. It is for a caller that wrote
// nothing its journal must name since that journal was written (the one
// Create found, or the last Checkpoint's): the rows the journal names are
// durable already, and bytes written since, which it does not name, need
// not be. A writer that is not Persistent, or not Journaled, is aborted
// instead, and an error says so. After it the writer is finished.
func (w *Writer) SuspendUnchanged() error {
	if !w.stable || !w.journaled {
		w.Abort()
		return fmt.Errorf("shardcache: suspend shard %d of %v unchanged: no journal on disk", w.shard, w.ep.key)
	}
	if !w.done.CompareAndSwap(false, true) {
		return fmt.Errorf("shardcache: suspend shard %d of %v: writer already finished", w.shard, w.ep.key)
	}
	// As in Abort, errors here lose nothing the journal names: those
	// rows were synced before it was written.
	_ = unix.Munmap(w.data)
	w.data = nil
	_ = w.closeFile()
	w.keep()
	return nil
}

// keep moves a suspended writer's file from the writer's reservation to
// its epoch's partial shards, unless the epoch was forgotten or the cache
// closed meanwhile.
func (w *Writer) keep() {
	c, ep := w.c, w.ep
	c.mu.Lock()
	c.reserved -= w.size
	ep.reserved -= w.size
	ep.writers--
	delete(ep.stable, w.shard)
	if c.epochs[ep.key] == ep && !c.closed {
		ep.partials[w.shard] = w.size
		ep.bytes += w.size
		c.committed += w.size
	}
	ev := c.settleLocked(ep)
	c.mu.Unlock()
	c.discard(ev)
}

// Checkpoint makes the rows written so far durable without ending the
// writer: it syncs the file, then replaces the journal with journal, as
// Suspend does. A process killed later keeps what the journal names. It
// must not run concurrently with itself, Commit, Suspend or Abort; writes
// of other rows may go on meanwhile (they are not in journal). A writer
// that is not Persistent ignores it.
func (w *Writer) Checkpoint(journal []byte) error {
	if !w.stable || len(journal) == 0 {
		return nil
	}
	if w.done.Load() {
		return fmt.Errorf("shardcache: checkpoint shard %d of %v: writer finished", w.shard, w.ep.key)
	}
	err := unix.Msync(w.data, unix.MS_SYNC)
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(w.tmp, os.O_WRONLY, 0); err == nil {
			err = f.Sync()
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	if err == nil {
		err = WriteAtomic(filepath.Join(w.ep.dir, journalName(w.shard)), journal)
	}
	if err != nil {
		return fmt.Errorf("shardcache: checkpoint shard %d of %v: %w", w.shard, w.ep.key, err)
	}
	w.journaled = true
	return nil
}

// WriteAtomic replaces the file at path with b, whole or not at all: a
// temporary file beside it, fsync, rename, directory fsync. The cache's
// small files (journals, meta.json, the loader's notes) are written so.
func WriteAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*"+tmpSuffix)
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// Journals returns the journals of k's partial shards, suspended or being
// written (a writer's last checkpoint), by shard: the caller's record of
// the rows each holds (cache-status counts them). A shard whose journal is
// gone or unreadable is left out.
func (c *Cache) Journals(k Key) map[int][]byte {
	c.mu.Lock()
	ep := c.epochs[k]
	if ep == nil || c.closed {
		c.mu.Unlock()
		return nil
	}
	dir, shards := ep.dir, make([]int, 0, len(ep.partials)+len(ep.stable))
	for s := range ep.partials {
		shards = append(shards, s)
	}
	for s := range ep.stable {
		shards = append(shards, s)
	}
	c.mu.Unlock()
	out := make(map[int][]byte, len(shards))
	for _, s := range shards {
		if b, err := os.ReadFile(filepath.Join(dir, journalName(s))); err == nil {
			out[s] = b
		}
	}
	return out
}

// OpenPartial maps the partial file of shard of k read-only, with its
// journal, for a reader of the rows the journal names (the loader uploads
// them to the shared tier). ErrMiss when the shard has no partial file.
// The rows the journal names do not change while a writer fills the others.
// The caller must Release the Mapping.
func (c *Cache) OpenPartial(k Key, shard int) (*Mapping, []byte, error) {
	c.mu.Lock()
	ep := c.epochs[k]
	ok := false
	if ep != nil && !c.closed {
		_, ok = ep.partials[shard]
		ok = ok || ep.stable[shard]
	}
	c.mu.Unlock()
	if !ok {
		return nil, nil, fmt.Errorf("%w: no partial shard %d of %v", ErrMiss, shard, k)
	}
	journal, err := os.ReadFile(filepath.Join(ep.dir, journalName(shard)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: no journal of partial shard %d of %v", ErrMiss, shard, k)
	} else if err != nil {
		return nil, nil, fmt.Errorf("shardcache: open partial shard %d of %v: %w", shard, k, err)
	}
	f, err := os.Open(filepath.Join(ep.dir, partialName(shard)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("%w: partial shard %d of %v", ErrMiss, shard, k)
	} else if err != nil {
		return nil, nil, fmt.Errorf("shardcache: open partial shard %d of %v: %w", shard, k, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return nil, nil, fmt.Errorf("%w: partial shard %d of %v is empty", ErrMiss, shard, k)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("shardcache: map partial shard %d of %v: %w", shard, k, err)
	}
	m := &Mapping{data: data}
	m.refs.Store(1)
	return m, journal, nil
}
