package shardcache

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A Writer is a shard being written: a temporary file mapped read-write.
// Data may be written from many goroutines (disjoint ranges); Commit and
// Abort are called once, by the owner, after those writes are done.
//
// A Writer holds its file's descriptor between writes only while fewer than
// Options.MaxOpenWriters writers do; the others open the file for each
// WriteAt (and take a free slot then, if one has come up). The mapping
// needs no descriptor.
type Writer struct {
	c     *Cache
	ep    *epoch
	shard int
	size  int64
	f     atomic.Pointer[os.File] // the kept descriptor, or nil
	tmp   string
	data  []byte
	done  atomic.Bool

	stable  bool   // the file is the shard's partial file (partial.go), not a temporary one
	journal []byte // the journal of a resumed partial shard; nil for a fresh file
	// journaled: the partial file has a journal on disk (resumed with
	// one, or a Checkpoint wrote it). Written by Checkpoint, which the
	// owner never runs beside SuspendUnchanged.
	journaled bool
}

// Create starts writing shard of epoch k, size bytes. It creates a temporary
// file in the epoch's directory and calls prepare, which may write the
// shard's skeleton (at most size bytes); the file is then extended to size
// bytes, its blocks allocated (a full disk fails here rather than as a
// fault while writing the mapping) and mapped read-write. Create reserves
// size bytes of the budget, evicting idle epochs least recently used first;
// if that cannot make room it returns an error wrapping ErrBudget. An error
// from prepare is returned wrapped and leaves nothing behind.
func (c *Cache) Create(k Key, shard int, size int64, prepare func(f *os.File) error) (*Writer, error) {
	switch {
	case shard < 0 || shard > math.MaxInt32:
		return nil, fmt.Errorf("shardcache: create shard %d of %v: shard out of range", shard, k)
	case size <= 0 || int64(int(size)) != size:
		return nil, fmt.Errorf("shardcache: create shard %d of %v: invalid size %d", shard, k, size)
	case prepare == nil:
		return nil, fmt.Errorf("shardcache: create shard %d of %v: nil prepare", shard, k)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	ep := c.entryLocked(k)
	stable, resume := c.takePartialLocked(ep, shard, size)
	evs, err := c.reserveLocked(ep, size)
	if err != nil {
		if stable {
			c.dropPartialLocked(ep, shard, resume)
		}
		evs = append(evs, c.settleLocked(ep)) // forget a new entry
		c.mu.Unlock()
		c.discard(evs...)
		return nil, err
	}
	ep.writers++ // keeps the entry while its directory is made
	ep.used()
	onDisk := ep.onDisk
	c.mu.Unlock()
	c.discard(evs...)
	w := &Writer{c: c, ep: ep, shard: shard, size: size, stable: stable}
	if !onDisk {
		if err := c.ensureDir(ep); err != nil {
			w.finish(true)
			return nil, err
		}
	}
	if err := w.open(prepare, resume); err != nil {
		w.finish(true)
		return nil, err
	}
	return w, nil
}

// WriteAt writes b at offset off of the shard through the file rather than
// the mapping; Data sees the bytes at once (one page cache). Prefer it for
// whole rows: a store into a mapped page not yet in memory makes the kernel
// fault the page in, zero-filling it first, where a write of whole pages
// skips that. Safe for concurrent use on disjoint ranges, like Data.
func (w *Writer) WriteAt(b []byte, off int64) (int, error) {
	if w.done.Load() {
		return 0, fmt.Errorf("shardcache: write shard %d of %v: %w", w.shard, w.ep.key, ErrClosed)
	}
	if off < 0 || off > w.size || int64(len(b)) > w.size-off {
		return 0, fmt.Errorf("shardcache: write shard %d of %v: [%d, %d) outside its %d bytes", w.shard, w.ep.key, off, off+int64(len(b)), w.size)
	}
	f := w.f.Load()
	if f == nil {
		var err error
		if f, err = w.reopen(); err != nil {
			return 0, fmt.Errorf("shardcache: write shard %d of %v: %w", w.shard, w.ep.key, err)
		}
		defer w.keepOrClose(f)
	}
	n, err := f.WriteAt(b, off)
	if err != nil {
		return n, fmt.Errorf("shardcache: write shard %d of %v: %w", w.shard, w.ep.key, err)
	}
	return n, nil
}

// reopenAttempts and reopenBackoff bound the retries of an open that finds
// no free descriptor (EMFILE, ENFILE): others are being closed all the time.
const (
	reopenAttempts = 5
	reopenBackoff  = 5 * time.Millisecond
)

// reopen opens the temporary file for writing.
func (w *Writer) reopen() (*os.File, error) { return openRetry(w.tmp, os.O_WRONLY) }

// openRetry is os.OpenFile(name, flag, 0), tried again after a backoff while
// it finds no free descriptor, up to reopenAttempts times.
func openRetry(name string, flag int) (*os.File, error) {
	wait := reopenBackoff
	for attempt := 1; ; attempt++ {
		f, err := os.OpenFile(name, flag, 0)
		if err == nil || attempt == reopenAttempts || !(errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE)) {
			return f, err
		}
		time.Sleep(wait)
		wait *= 2
	}
}

// keepOrClose keeps f as the writer's descriptor when a slot is free and
// the writer has none, and closes it otherwise.
func (w *Writer) keepOrClose(f *os.File) {
	if w.c.openWriters.Add(1) <= int64(w.c.opts.MaxOpenWriters) && w.f.CompareAndSwap(nil, f) {
		return
	}
	w.c.openWriters.Add(-1)
	_ = f.Close()
}

// closeFile closes the kept descriptor, if any, freeing its slot.
func (w *Writer) closeFile() error {
	f := w.f.Swap(nil)
	if f == nil {
		return nil
	}
	w.c.openWriters.Add(-1)
	return f.Close()
}

// open creates, prepares, allocates and maps the shard's file: its
// partial file when the writer holds that name (resumed when resume is
// set and the file is whole), else a temporary file.
func (w *Writer) open(prepare func(f *os.File) error, resume bool) (err error) {
	k, shard := w.ep.key, w.shard
	if w.stable && resume {
		if ok, err := w.resume(); ok || err != nil {
			return err
		}
	}
	var f *os.File
	if w.stable {
		// A stale file is unlinked, never truncated: a reader's lease may
		// still map it.
		_ = os.Remove(filepath.Join(w.ep.dir, journalName(shard)))
		_ = os.Remove(filepath.Join(w.ep.dir, partialName(shard)))
		f, err = os.OpenFile(filepath.Join(w.ep.dir, partialName(shard)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			if perr := w.c.perm.file(f); perr != nil {
				_ = f.Close()
				f, err = nil, perr
			}
		}
	} else {
		f, err = w.c.perm.createTemp(w.ep.dir, fmt.Sprintf("%s%06d.", shardPrefix, shard), tmpSuffix)
	}
	if err != nil {
		return fmt.Errorf("shardcache: create shard %d of %v: %w", shard, k, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := prepare(f); err != nil {
		return fmt.Errorf("shardcache: prepare shard %d of %v: %w", shard, k, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("shardcache: create shard %d of %v: %w", shard, k, err)
	}
	if fi.Size() > w.size {
		return fmt.Errorf("shardcache: prepare shard %d of %v: wrote %d bytes, more than its size %d", shard, k, fi.Size(), w.size)
	}
	fd := int(f.Fd())
	if err := unix.Fallocate(fd, 0, 0, w.size); errors.Is(err, unix.EOPNOTSUPP) {
		err = f.Truncate(w.size) // no preallocation on this file system
		if err != nil {
			return fmt.Errorf("shardcache: create shard %d of %v: %w", shard, k, err)
		}
	} else if err != nil {
		return fmt.Errorf("shardcache: allocate shard %d of %v: %w", shard, k, err)
	}
	data, err := unix.Mmap(fd, 0, int(w.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("shardcache: map shard %d of %v: %w", shard, k, err)
	}
	hugeFolios(data)
	w.tmp, w.data = f.Name(), data
	w.keepOrClose(f)
	return nil
}

// hugeFolios asks the kernel to hold the new shard mapped at data in the
// page cache in huge folios (2 MiB on x86-64), before any row is written:
// MADV_HUGEPAGE, then MADV_POPULATE_READ, which reads the still unwritten
// (zero) file into folios of that size without dirtying them. Rows written
// later (WriteAt, 150,528 bytes at offsets that are no multiple of a page)
// then land in those folios; written first, each row would make folios of
// 1 to 32 pages, as the kernel sizes a write's folios by its length and
// alignment. Readers gain from huge folios: a pread of a row looks up and
// copies one or two folios, not a dozen, and a reader mapping the file
// maps it with a few PMD entries rather than 4 KiB page by page (the
// local transport, SPEC §9). Best effort: a kernel without transparent
// huge pages (or before Linux 5.14) or short of huge pages gives smaller
// folios, and nothing else changes.
func hugeFolios(data []byte) {
	_ = unix.Madvise(data, unix.MADV_HUGEPAGE)
	_ = unix.Madvise(data, unix.MADV_POPULATE_READ)
}

// Data returns the mapping of the whole file, to be filled in. It is invalid
// after Commit or Abort.
func (w *Writer) Data() []byte { return w.data }

// Path returns the path of the temporary file until Commit renames it.
func (w *Writer) Path() string { return w.tmp }

// Size returns the shard's size in bytes.
func (w *Writer) Size() int64 { return w.size }

// Commit makes the shard durable and visible: it syncs the mapping and the
// file, computes the CRC-32C of the bytes, renames the file to its final
// name and syncs the directory. Only then does Open find the shard. A second
// commit of the same shard replaces the first atomically. On error (a full
// disk, say) the temporary file is removed and nothing becomes visible.
func (w *Writer) Commit() error { return w.commit(nil) }

// CommitSum is Commit for a caller that knows the CRC-32C of the shard's
// bytes (Checksum, ChecksumShift: the checksums of the parts it wrote,
// joined), which spares reading them all again. A wrong crc names the file
// wrongly: the first Open finds it corrupt and deletes it.
func (w *Writer) CommitSum(crc uint32) error { return w.commit(&crc) }

func (w *Writer) commit(sum *uint32) error {
	if !w.done.CompareAndSwap(false, true) {
		return fmt.Errorf("shardcache: commit shard %d of %v: writer already finished", w.shard, w.ep.key)
	}
	c, ep := w.c, w.ep
	crc, err := w.sync(sum == nil)
	if sum != nil {
		crc = *sum
	}
	if err != nil {
		_ = os.Remove(w.tmp)
		w.finish(true)
		return fmt.Errorf("shardcache: commit shard %d of %v: %w", w.shard, ep.key, err)
	}
	sf := shardFile{name: shardName(w.shard, crc), size: w.size}
	final := filepath.Join(ep.dir, sf.name)

	ep.fs.Lock() // the rename and forget's removal exclude each other
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		ep.fs.Unlock()
		if !w.stable { // a partial file stays for the next process, journal and all
			_ = os.Remove(w.tmp)
		}
		w.finish(false)
		return ErrClosed
	}
	err = os.Rename(w.tmp, final)
	ep.fs.Unlock()
	if err != nil {
		_ = os.Remove(w.tmp)
		w.finish(true)
		return fmt.Errorf("shardcache: commit shard %d of %v: %w", w.shard, ep.key, err)
	}
	if w.stable {
		_ = os.Remove(filepath.Join(ep.dir, journalName(w.shard)))
	}
	if err := syncDir(ep.dir); err != nil {
		ep.fs.Lock()
		c.mu.Lock()
		same := ep.shards[w.shard] == sf // an identical file committed before
		c.mu.Unlock()
		if !same {
			_ = os.Remove(final)
		}
		ep.fs.Unlock()
		w.finish(true)
		return fmt.Errorf("shardcache: commit shard %d of %v: sync directory: %w", w.shard, ep.key, err)
	}

	ep.fs.Lock()
	c.mu.Lock()
	oldPath := ""
	if old, ok := ep.shards[w.shard]; ok {
		ep.bytes -= old.size
		c.committed -= old.size
		if old.name != sf.name { // different bytes: keep only the newest
			oldPath = filepath.Join(ep.dir, old.name)
			delete(c.verified, oldPath)
		}
	}
	ep.shards[w.shard] = sf
	ep.bytes += sf.size
	c.committed += sf.size
	c.reserved -= w.size
	ep.reserved -= w.size
	ep.writers--
	if w.stable {
		delete(ep.stable, w.shard)
	}
	ep.lastUsed = time.Now()
	ev := c.settleLocked(ep)
	c.mu.Unlock()
	if oldPath != "" {
		_ = os.Remove(oldPath)
	}
	ep.fs.Unlock()
	c.m.shardsWritten.Inc()
	c.discard(ev)
	return nil
}

// sync flushes the mapping and the file, checksums the bytes when sum is
// set and closes the file and the mapping.
func (w *Writer) sync(sum bool) (uint32, error) {
	err := unix.Msync(w.data, unix.MS_SYNC)
	if err == nil {
		f := w.f.Load()
		if f == nil {
			if f, err = w.reopen(); err == nil {
				err = f.Sync()
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
		} else {
			err = f.Sync()
		}
	}
	var crc uint32
	if sum {
		crc = checksum(w.data)
	}
	if uerr := unix.Munmap(w.data); err == nil {
		err = uerr
	}
	w.data = nil
	if cerr := w.closeFile(); err == nil {
		err = cerr
	}
	return crc, err
}

// Abort discards the shard: it unmaps and removes the temporary file. It
// does nothing after Commit, so `defer w.Abort()` is a safe cleanup.
func (w *Writer) Abort() {
	if !w.done.CompareAndSwap(false, true) {
		return
	}
	_ = unix.Munmap(w.data)
	w.data = nil
	_ = w.closeFile()
	_ = os.Remove(w.tmp)
	w.finish(true)
}

// finish returns the writer's reservation and, for a partial file, its
// name; removeJournal also removes the partial file's journal (the file
// itself is gone or was never made).
func (w *Writer) finish(removeJournal bool) {
	if w.stable && removeJournal {
		_ = os.Remove(filepath.Join(w.ep.dir, journalName(w.shard)))
	}
	c := w.c
	c.mu.Lock()
	if w.stable {
		delete(w.ep.stable, w.shard)
	}
	c.mu.Unlock()
	c.finishWrite(w.ep, w.size)
}

// finishWrite returns a writer's reservation and settles its epoch.
func (c *Cache) finishWrite(ep *epoch, size int64) {
	c.mu.Lock()
	c.reserved -= size
	ep.reserved -= size
	ep.writers--
	ev := c.settleLocked(ep)
	c.mu.Unlock()
	c.discard(ev)
}
