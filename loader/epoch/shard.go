package epoch

// The life cycle of a shard: this file is its only home.
//
// # States
//
// A Shard is in one mode (Shard.mode, under Shard.mu):
//
//	unknown     not looked up yet, or known absent from the cache
//	cached      committed in the cache, not mapped by this Epoch
//	mapped      committed and mapped: rows are served from the mapping
//	writing     a shardcache.Writer is filled row by row (partial)
//	committing  every row written and no batch reads the writer: Commit runs
//
// While writing, each row is absent, claimed (one worker computes it), ready
// (written, with the index and label it carries) or failed (undecodable
// under the fail policy: every later caller gets the error). A computation
// that fails for a reason of the moment (a file unreadable or changed, a
// full disk) leaves its row absent, as an abandoned claim does: its
// claimer reports the error to the request that asked for the row, and a
// later request computes the row afresh. So a failed read is never
// remembered, and a shard with a row that is not ready never commits (the
// rows already written stay in the writer: they came from files that
// matched the listing).
//
// # Transitions
//
//	unknown → cached        lookup: Cache.Has finds the shard committed
//	cached → mapped         lookup with open: Cache.Open, arrowio.OpenShard
//	cached, mapped → unknown
//	                        lookup: Cache.Open finds it corrupt (the cache
//	                        deletes it) or gone
//	mapped → cached         close: the Epoch's last user left
//	unknown → writing       startWriter (Cache.Create), when Request,
//	                        Acquire or Settle claims a row
//	writing → committing    Finish of the last row when no batch holds a
//	                        row of the writer, or else the last batch's
//	                        release (unref) once every row is ready
//	committing → cached     commit: Writer.Commit succeeded
//	committing → unknown    commit: Writer.Commit failed (Shard.err keeps
//	                        why; Settle reports it)
//	writing → unknown       suspendWriter: the Epoch's users are gone and no
//	                        batch holds the writer. With rows ready, the
//	                        shard is kept partial (Writer.Suspend: the file
//	                        synced, then a journal of its ready rows with
//	                        their CRC-32C, written atomically) and
//	                        Hooks.Suspended runs; with none it is aborted.
//	                        When no row became ready since the journal on
//	                        disk was written (Shard.durable, Shard.fresh 0:
//	                        the rows were resumed from it or checkpointed),
//	                        that journal names every ready row already:
//	                        Writer.SuspendUnchanged keeps file and journal
//	                        as they are, with no sync and no write
//
// While writing, every quarter of the shard's rows (at least
// minCheckpoint) a checkpoint writes the journal of the rows ready so far
// (Writer.Checkpoint: the file synced first), holding the writer as a
// batch does, so that a process killed mid-epoch keeps them. Shard.fresh
// counts the rows ready since the journal on disk was written; a row
// Stored but not Finished ready is in no journal, whatever its bytes.
//
// A partial shard kept so is first-class: the next startWriter of the
// shard (this process or one started later) gets its file and journal back
// from Cache.Create, and resume marks ready each row the journal names
// whose bytes, index and label still match it; the others are absent and
// computed again. A row is served from disk only so: durable before the
// journal named it, and checked after. A shard resumed whole commits.
//
// Partial to committed, step by step: the worker that writes the last row
// calls Finish, which under Shard.mu marks the row ready, registers the
// shard in Commits (Commits.mu, under Shard.mu) so that a later Epoch of
// the same key waits for it instead of computing it again, and, when no
// batch holds the writer, sets committing. Finish then releases Shard.mu
// and hands the shard to a commit goroutine (Commits.run, at most
// maxCommits at once). That goroutine calls Writer.Commit holding no lock
// of this package (shardcache msyncs, fsyncs, checksums, renames and syncs
// the directory, taking its own locks only around the rename and to record
// the entry), then takes Shard.mu to set cached, wake the waiters and,
// still under Shard.mu, close the shard's entry in Commits.
// If a batch still reads the writer when the last row lands, the batch's
// release (unref) takes that role instead.
//
// # Readers in other processes
//
// A local stream (SPEC §9) names files instead of sending bytes: a ready
// row's Slot carries File, the committed shard's path (modeMapped) or the
// writer's temporary file (modeWriting, a partial shard), and the offset
// of its image there. While the caller holds the Slot's reference, File
// names that file: a writer cannot commit (rename) while wrefs > 0, and a
// committed shard is only unlinked by eviction, which waits for the
// epoch's pins. The caller links File into a shardcache.Lease before it
// releases the Slot, so the reader's name outlives the cache's: a partial
// shard's rows not yet written are never named (a row is named only once
// ready), and a rename or unlink of the cache's name leaves the leased
// file and its bytes as they are.
//
// # Lock order
//
//	loader's Loader.mu  never held together with any Shard.mu
//	Shard.mu            before Commits.mu, and before shardcache's locks
//	                    (Has, Open, Create, Writer.Abort and Mapping.Release
//	                    run under it; Writer.Commit never does)
//	Commits.mu          a leaf: nothing is locked under it
//
// Hooks.Committed and Hooks.Suspended run with no lock of this package
// held (the loader queues uploads there); Hooks.Resumed runs under
// Shard.mu and only counts. Epoch.rmu (writers held past Close) is a leaf,
// taken under Shard.mu. No two Shard.mu are ever held together. shardcache never calls back into
// this package, so its locks cannot close a cycle.

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// rowState is where a row of a shard in production stands.
type rowState uint8

const (
	rowAbsent  rowState = iota
	rowClaimed          // a worker computes it
	rowReady            // written into the writer's mapping
	rowFailed           // undecodable under the fail policy: final
)

// mode is where a shard stands (see the top of this file).
type mode uint8

const (
	modeUnknown    mode = iota // not looked up; or not in the cache
	modeCached                 // committed in the cache, not mapped here
	modeMapped                 // committed and mapped: rows are served from view
	modeWriting                // a writer is filled row by row
	modeCommitting             // every row written; Commit runs
)

// ErrAbandoned is the outcome a claimer gives Finish for a claimed row it
// gives up unwritten (its requester left): the row is absent again.
var ErrAbandoned = errors.New("epoch: row abandoned")

// A Shard is shard num of an epoch: samples [lo, lo+n). It is safe for
// concurrent use.
type Shard struct {
	// Set by New, read-only after.
	id      shardID // cache key and shard number
	lo, n   int
	layout  *arrowio.ShardLayout
	schema  *arrow.Schema
	cache   *shardcache.Cache
	commits *Commits
	hooks   *Hooks       // never nil
	owner   *Epoch       // told when a writer held past Close is gone
	log     *slog.Logger // carries the dataset and epoch

	mu      sync.Mutex          // guards every field below
	mode    mode                //
	m       *shardcache.Mapping // modeMapped: the Epoch's reference
	view    *arrowio.ShardView  // modeMapped: the rows of m
	w       *shardcache.Writer  // modeWriting, modeCommitting
	rows    []rowState          // modeWriting: by row
	index   []uint64            // modeWriting: what each ready row carries
	label   []int64             //
	crcs    []uint32            // modeWriting: CRC-32C of each ready row's image (Store writes it, the claim owning the row)
	summed  []bool              // modeWriting: crcs[p] holds row p's (Store or a resumed journal set it)
	errs    map[int]error       // modeWriting: why each failed row failed
	ready   int                 // modeWriting: rows ready
	wrefs   int                 // batches holding rows of w, and a checkpoint running
	fresh   int                 // modeWriting: rows ready since the journal was last written
	durable bool                // modeWriting: the journal on disk names exactly the ready rows fresh does not count (resumed with every row it named checked, or checkpointed)
	saving  bool                // a checkpoint runs
	saved   chan struct{}       // closed when that checkpoint is over
	closing bool                // the Epoch's users are gone: drop w once unreferenced
	held    bool                // the writer outlived Close (owner.hold): owner.letGo when it goes
	err     error               // the last commit's failure
	changed chan struct{}       // closed and replaced on every change (broadcast)
}

// Lo returns the sample of row 0: the shard holds samples [Lo, Lo+Rows).
func (sh *Shard) Lo() int { return sh.lo }

// Rows returns the number of rows of the shard.
func (sh *Shard) Rows() int { return sh.n }

// broadcast wakes everything waiting on sh; the caller holds sh.mu.
func (sh *Shard) broadcast() {
	close(sh.changed)
	sh.changed = make(chan struct{})
}

// lookup finds out whether sh is committed in the cache, mapping it when
// open is set; the caller holds sh.mu. A corrupt shard (the cache has
// removed it) counts as absent. It returns a channel to wait on when the
// shard is absent but being committed by an earlier Epoch's writer.
func (sh *Shard) lookup(open bool) (<-chan struct{}, error) {
	if sh.mode == modeUnknown && sh.cache.Has(sh.id.key, sh.id.num) {
		sh.mode = modeCached
	}
	if sh.mode == modeUnknown {
		// A complete shard of an earlier user of this epoch may be on its
		// way into the cache: wait for it rather than compute it again.
		if ch := sh.commits.committing(sh.id); ch != nil {
			return ch, nil
		}
	}
	if sh.mode != modeCached || !open {
		return nil, nil
	}
	m, err := sh.cache.Open(sh.id.key, sh.id.num)
	switch {
	case errors.Is(err, shardcache.ErrCorrupt), errors.Is(err, shardcache.ErrMiss):
		sh.log.Warn("loader: cached shard unusable; recomputing", "shard", sh.id.num, "err", err)
		sh.mode = modeUnknown
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("epoch: open shard %d of epoch %d: %w", sh.id.num, sh.id.key.Epoch, err)
	}
	v, err := arrowio.OpenShard(m.Data(), sh.schema, sh.n)
	if err != nil {
		m.Release()
		return nil, fmt.Errorf("epoch: shard %d of epoch %d: %w", sh.id.num, sh.id.key.Epoch, err)
	}
	sh.m, sh.view, sh.mode = m, v, modeMapped
	return nil, nil
}

// startWriter creates the shard's file in the cache; the caller holds sh.mu.
func (sh *Shard) startWriter() error {
	w, err := sh.cache.Create(sh.id.key, sh.id.num, sh.layout.Size, sh.layout.WriteSkeleton)
	if errors.Is(err, shardcache.ErrBudget) || outOfFiles(err) {
		return fmt.Errorf("epoch: shard %d of epoch %d: %w: %w", sh.id.num, sh.id.key.Epoch, service.ErrExhausted, err)
	} else if err != nil {
		return fmt.Errorf("epoch: shard %d of epoch %d: %w", sh.id.num, sh.id.key.Epoch, err)
	}
	sh.w, sh.mode = w, modeWriting
	sh.rows = make([]rowState, sh.n)
	sh.index = make([]uint64, sh.n)
	sh.label = make([]int64, sh.n)
	sh.crcs = make([]uint32, sh.n)
	sh.summed = make([]bool, sh.n)
	sh.errs = map[int]error{}
	sh.ready, sh.fresh, sh.durable = 0, 0, false
	sh.err = nil
	sh.resume(w.Journal())
	return nil
}

// resume marks ready the rows of a reopened partial shard that its journal
// names and whose bytes still match it (CRC-32C of the image, index and
// label in place); the caller holds sh.mu. A row that does not match stays
// absent and is computed again. A shard found whole is committed.
func (sh *Shard) resume(journal []byte) {
	if journal == nil {
		return
	}
	rows, err := DecodeJournal(journal)
	if err != nil {
		sh.log.Warn("loader: partial shard's journal unreadable; its rows are computed again", "shard", sh.id.num, "err", err)
		return
	}
	data := sh.w.Data()
	bad := 0
	for _, r := range rows {
		if r.Row < 0 || r.Row >= sh.n || sh.rows[r.Row] == rowReady {
			bad++
			continue
		}
		if rowCRC(sh.layout.Row(data, r.Row)) != r.CRC || sh.layout.Index(data, r.Row) != r.Index || sh.layout.Label(data, r.Row) != r.Label {
			bad++
			continue
		}
		sh.rows[r.Row], sh.index[r.Row], sh.label[r.Row], sh.crcs[r.Row], sh.summed[r.Row] = rowReady, r.Index, r.Label, r.CRC, true
		sh.ready++
	}
	if bad > 0 {
		sh.log.Warn("loader: rows of a partial shard failed their check; computing them again", "shard", sh.id.num, "rows", bad)
	}
	// The journal names exactly the rows ready now, each durable before
	// it named it, unless some failed their check (a suspend writes a
	// journal without them).
	sh.durable = bad == 0 && sh.ready > 0
	sh.hooks.resumed(sh.ready)
	if sh.ready == sh.n && sh.wrefs == 0 { // whole already: commit it
		sh.commits.start(sh.id)
		sh.mode = modeCommitting
		sh.commits.run(sh.commit)
	}
}

// Request claims row p for the caller when nobody has it yet; it reports
// false when the row is cached, ready or claimed by another. A committed
// shard is mapped here when open is set, ahead of its rows being gathered.
// A claimed row must be given to Finish.
func (sh *Shard) Request(p int, open bool) (bool, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if wait, err := sh.lookup(open); err != nil || wait != nil {
		return false, err // being committed: the consumer waits for it
	}
	switch sh.mode {
	case modeCached, modeMapped, modeCommitting:
		return false, nil
	case modeUnknown:
		if err := sh.startWriter(); err != nil {
			return false, err
		}
	}
	switch sh.rows[p] {
	case rowAbsent:
		sh.rows[p] = rowClaimed
		return true, nil
	case rowFailed:
		return false, sh.errs[p]
	}
	return false, nil
}

// A Slot is what Acquire found for a row: ready, claimed, or neither (then
// Wait is closed when the shard changes).
type Slot struct {
	Ready   bool
	Img     []byte // Ready: the row's image bytes
	Index   uint64 // Ready: the sample the row holds
	Label   int64
	Release func()          // Ready, when not nil: drops the reference that keeps Img valid
	File    string          // Ready with Release: the file holding the row, named so while Release is not called
	Offset  int64           // Ready with Release: the byte offset of the row's image in File
	Claimed bool            // the claim is the caller's: it computes the row and calls Finish
	Wait    <-chan struct{} // neither: closed when the shard changes
	Cached  bool            // Ready and served from a committed shard
}

// Acquire returns row p: ready (with a reference the caller releases),
// claimed for the caller (when claim is set and nobody computes it), or a
// channel to wait on. A committed shard is mapped on first use when serve
// is set; otherwise its rows count as ready without a reference.
func (sh *Shard) Acquire(p int, claim, serve bool) (Slot, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if wait, err := sh.lookup(serve); err != nil || wait != nil {
		return Slot{Wait: wait}, err
	}
	switch sh.mode {
	case modeCached:
		return Slot{Ready: true, Cached: true}, nil
	case modeMapped:
		sh.m.Retain()
		return Slot{Ready: true, Cached: true, Img: sh.view.Row(p), Index: sh.view.Index(p), Label: sh.view.Label(p), Release: sh.m.Release,
			File: sh.m.Path(), Offset: sh.rowOffset(p)}, nil
	case modeCommitting:
		return Slot{Wait: sh.changed}, nil
	case modeUnknown:
		if !claim {
			return Slot{Wait: sh.changed}, nil
		}
		if err := sh.startWriter(); err != nil {
			return Slot{}, err
		}
		if sh.mode == modeCommitting { // resumed whole
			return Slot{Wait: sh.changed}, nil
		}
	}
	switch sh.rows[p] {
	case rowReady:
		s := Slot{Ready: true, Img: sh.layout.Row(sh.w.Data(), p), Index: sh.index[p], Label: sh.label[p]}
		if serve {
			sh.wrefs++
			s.Release, s.File, s.Offset = sh.unref, sh.w.Path(), sh.rowOffset(p)
		}
		return s, nil
	case rowFailed:
		return Slot{}, sh.errs[p]
	case rowAbsent:
		if claim {
			sh.rows[p] = rowClaimed
			return Slot{Claimed: true}, nil
		}
	}
	return Slot{Wait: sh.changed}, nil
}

// rowOffset is the byte offset of row p's image in the shard file.
func (sh *Shard) rowOffset(p int) int64 {
	return sh.layout.ImageOffset + int64(p)*int64(sh.layout.RowBytes)
}

// Settle reports whether sh is committed; if not, it claims its absent
// rows (returned as row numbers) for the caller and returns what to wait
// on. A failed commit is an error.
func (sh *Shard) Settle() (bool, []int, <-chan struct{}, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if wait, err := sh.lookup(false); err != nil || wait != nil {
		return false, nil, wait, err
	}
	switch sh.mode {
	case modeCached, modeMapped:
		return true, nil, nil, nil
	case modeCommitting:
		return false, nil, sh.changed, nil
	case modeUnknown:
		if sh.err != nil {
			return false, nil, nil, fmt.Errorf("epoch: shard %d of epoch %d: %w", sh.id.num, sh.id.key.Epoch, sh.err)
		}
		if err := sh.startWriter(); err != nil {
			return false, nil, nil, err
		}
		if sh.mode == modeCommitting { // resumed whole
			return false, nil, sh.changed, nil
		}
	}
	var claims []int
	for p, st := range sh.rows {
		switch st {
		case rowAbsent:
			sh.rows[p] = rowClaimed
			claims = append(claims, p)
		case rowFailed:
			return false, nil, nil, sh.errs[p]
		}
	}
	return false, claims, sh.changed, nil
}

// Written reports the rows of sh written in this process: those ready in
// its writer (every row while it commits), and whether it has a writer.
// A shard without one is committed, absent, or a partial shard on disk
// whose journal says what it holds.
func (sh *Shard) Written() (rows int, writing bool) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	switch sh.mode {
	case modeWriting:
		return sh.ready, true
	case modeCommitting:
		return sh.n, true
	}
	return 0, false
}

// Committed looks sh up in the cache (without mapping it) and reports
// whether it is committed.
func (sh *Shard) Committed() (bool, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, err := sh.lookup(false)
	return sh.mode == modeCached || sh.mode == modeMapped, err
}

// Store writes the rendered row img as row p, which the caller has
// claimed, through the file: a store into a mapped page not yet in memory
// makes the kernel zero-fill it first (a fifth of a fused precompute's
// time), a write of whole pages does not. The writer's mapping shows the
// bytes at once. It takes no lock: the claim makes row p the caller's, and
// the writer lives until the claim is given to Finish.
func (sh *Shard) Store(p int, img []byte) error {
	if len(img) != sh.layout.RowBytes {
		return fmt.Errorf("epoch: row of %d bytes for a %d-byte slot", len(img), sh.layout.RowBytes)
	}
	sh.crcs[p], sh.summed[p] = rowCRC(img), true // the claim makes row p the caller's
	if _, err := sh.w.WriteAt(img, sh.rowOffset(p)); outOfFiles(err) {
		return fmt.Errorf("epoch: shard %d of epoch %d: %w: %w", sh.id.num, sh.id.key.Epoch, service.ErrExhausted, err)
	} else if err != nil {
		return fmt.Errorf("epoch: shard %d of epoch %d: %w", sh.id.num, sh.id.key.Epoch, err)
	}
	return nil
}

// outOfFiles reports whether err is the process (EMFILE) or the system
// (ENFILE) out of file descriptors: a shortage of the moment, which the
// service answers with ResourceExhausted.
func outOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// Finish records the outcome of claimed row p: written (by Store) with the
// index and label it carries, failed for good (err wraps
// service.ErrDataLoss: every later caller gets err), or given up unwritten
// (any other err, ErrAbandoned among them: the row is absent again, and
// reporting err is the claimer's). When this was the last row and no batch
// holds the writer, it hands the shard to a commit goroutine.
func (sh *Shard) Finish(p int, index uint64, label int64, err error) {
	sh.mu.Lock()
	switch {
	case err == nil:
		sh.layout.SetIndex(sh.w.Data(), p, index)
		sh.layout.SetLabel(sh.w.Data(), p, label)
		sh.rows[p], sh.index[p], sh.label[p] = rowReady, index, label
		if sh.ready++; sh.ready == sh.n {
			sh.commits.start(sh.id)
		}
	case errors.Is(err, service.ErrDataLoss):
		sh.rows[p], sh.errs[p] = rowFailed, err
	default:
		sh.rows[p] = rowAbsent
	}
	sh.broadcast()
	commit := sh.ready == sh.n && sh.wrefs == 0
	if commit {
		sh.mode = modeCommitting
	}
	var journal []byte
	if err == nil && !commit && sh.ready < sh.n {
		if sh.fresh++; sh.fresh >= max(minCheckpoint, sh.n/4) && !sh.saving && sh.w.Persistent() {
			// Make the rows so far survive a crash: a checkpoint holds the
			// writer like a batch does, so it is neither committed nor
			// suspended under it; its unref does that after.
			journal, sh.fresh, sh.saving, sh.saved = sh.journal(), 0, true, make(chan struct{})
			sh.wrefs++
		}
	}
	sh.mu.Unlock()
	if commit {
		sh.commits.run(sh.commit)
	}
	if journal != nil {
		sh.commits.run(func() { sh.checkpoint(journal) })
	}
}

// minCheckpoint is the fewest new rows that make a partial shard write its
// journal while it is written (checkpoint); a quarter of the shard if more.
const minCheckpoint = 64

// checkpoint writes journal for the writer, which a reference keeps alive;
// it runs on a commit goroutine, without sh.mu.
func (sh *Shard) checkpoint(journal []byte) {
	err := sh.w.Checkpoint(journal)
	if err != nil {
		sh.log.Warn("loader: checkpoint partial shard", "shard", sh.id.num, "err", err)
	}
	sh.mu.Lock()
	sh.saving = false
	sh.durable = err == nil // a failed one leaves an older journal, or none
	close(sh.saved)
	sh.unrefLocked() // in the same hold of sh.mu: close never sees saving over and the reference still held
}

// journal encodes the ready rows of the writer; the caller holds sh.mu.
func (sh *Shard) journal() []byte {
	var rows []JournalRow
	for p, st := range sh.rows {
		if st == rowReady {
			rows = append(rows, JournalRow{Row: p, CRC: sh.crcs[p], Index: sh.index[p], Label: sh.label[p]})
		}
	}
	if len(rows) == 0 {
		return nil
	}
	return encodeJournal(rows)
}

// unref drops a batch's reference to the writer's mapping (a Slot's
// Release).
func (sh *Shard) unref() {
	sh.mu.Lock()
	sh.unrefLocked()
}

// unrefLocked drops a reference to the writer and does what the last one
// implies (commit, or suspend when closing); the caller holds sh.mu, which
// it releases.
func (sh *Shard) unrefLocked() {
	sh.wrefs--
	if sh.wrefs > 0 || sh.mode != modeWriting {
		sh.mu.Unlock()
		return
	}
	if sh.ready == sh.n {
		sh.mode = modeCommitting
		sh.mu.Unlock()
		sh.commits.run(sh.commit)
		return
	}
	suspended := false
	if sh.closing {
		suspended = sh.suspendWriter()
	}
	sh.mu.Unlock()
	if suspended {
		sh.hooks.suspended(sh.id.num)
	}
}

// commit makes the shard visible in the cache; it runs on a commit
// goroutine, without sh.mu: the caller has set modeCommitting, so nothing
// reads or writes the writer's mapping meanwhile.
func (sh *Shard) commit() {
	var err error
	if crc, ok := sh.checksum(); ok {
		err = sh.w.CommitSum(crc)
	} else {
		err = sh.w.Commit()
	}
	sh.mu.Lock()
	sh.w, sh.rows, sh.index, sh.label, sh.crcs, sh.summed, sh.errs = nil, nil, nil, nil, nil, nil, nil
	if err != nil {
		sh.log.Error("loader: commit shard", "shard", sh.id.num, "err", err)
		sh.mode, sh.err = modeUnknown, err
	} else {
		sh.mode = modeCached
	}
	sh.broadcast()
	sh.commits.end(sh.id)
	sh.letGo()
	sh.mu.Unlock()
	if err == nil {
		sh.hooks.committed(sh.id.num)
	}
}

// checksum returns the CRC-32C of the whole file of the shard being
// committed, from the rows' checksums and the bytes around the rows, which
// it reads: the commit need not read the rows again (5% of a fused
// precompute's CPU time went there). false when a row's checksum is unknown.
// It runs with every row ready, no claim left: nothing writes meanwhile.
func (sh *Shard) checksum() (uint32, bool) {
	l, data := sh.layout, sh.w.Data()
	lo := l.ImageOffset
	hi := lo + int64(sh.n)*int64(l.RowBytes)
	if hi > int64(len(data)) {
		return 0, false
	}
	crc := shardcache.Checksum(data[:lo])
	row := shardcache.NewChecksumShift(int64(l.RowBytes))
	for p, ok := range sh.summed {
		if !ok {
			return 0, false
		}
		crc = row.Join(crc, sh.crcs[p])
	}
	tail := data[hi:]
	return shardcache.NewChecksumShift(int64(len(tail))).Join(crc, shardcache.Checksum(tail)), true
}

// suspendWriter keeps an unfinished writer's shard in the cache as a
// partial shard, with the journal of its ready rows, and reports whether
// there was any; the caller holds sh.mu. When the journal on disk names
// those rows already (nothing new since it was written), it stays as it
// is, and so does the file: no sync, no journal written.
func (sh *Shard) suspendWriter() bool {
	var err error
	kept := false
	if sh.fresh == 0 && sh.durable && sh.w.Persistent() && sh.w.Journaled() {
		kept, err = true, sh.w.SuspendUnchanged()
	} else if journal := sh.journal(); journal != nil {
		kept, err = sh.w.Persistent(), sh.w.Suspend(journal)
	} else {
		sh.w.Abort()
	}
	if err != nil {
		sh.log.Warn("loader: keep partial shard", "shard", sh.id.num, "err", err)
		kept = false
	}
	sh.w, sh.rows, sh.index, sh.label, sh.crcs, sh.summed, sh.errs = nil, nil, nil, nil, nil, nil, nil
	sh.mode = modeUnknown
	sh.broadcast()
	sh.letGo()
	return kept
}

// letGo tells the owner a writer held past Close is gone; the caller holds
// sh.mu.
func (sh *Shard) letGo() {
	if sh.held {
		sh.held = false
		sh.owner.letGo()
	}
}

// close runs when the Epoch's last user leaves: no row is claimed then.
func (sh *Shard) close() {
	sh.mu.Lock()
	for sh.saving { // a checkpoint is short: wait for it, then suspend here
		ch := sh.saved
		sh.mu.Unlock()
		<-ch
		sh.mu.Lock()
	}
	sh.closing = true
	suspended := false
	switch sh.mode {
	case modeMapped:
		sh.m.Release()
		sh.m, sh.view, sh.mode = nil, nil, modeCached
	case modeWriting:
		if sh.wrefs == 0 {
			suspended = sh.suspendWriter()
		} else if !sh.held { // batches hold it: their last release keeps it
			sh.held = true
			sh.owner.hold()
		}
	case modeCommitting:
		if !sh.held { // its commit runs
			sh.held = true
			sh.owner.hold()
		}
	}
	sh.mu.Unlock()
	if suspended {
		sh.hooks.suspended(sh.id.num)
	}
}

// reserved returns the bytes of the shard's writer, 0 when it has none.
func (sh *Shard) reserved() int64 {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.w == nil {
		return 0
	}
	return sh.layout.Size
}

// Hooks are what an Epoch's shards tell their loader. Committed and
// Suspended run without any lock of this package held; Resumed runs under
// the shard's lock and must not block. A nil func is skipped.
type Hooks struct {
	Committed func(shard int) // the shard was committed to the cache
	Suspended func(shard int) // the shard was kept partial, with the journal of its ready rows
	Resumed   func(rows int)  // a partial shard was reopened with rows ready that its journal named and that checked
}

func (h *Hooks) committed(shard int) {
	if h.Committed != nil {
		h.Committed(shard)
	}
}

func (h *Hooks) suspended(shard int) {
	if h.Suspended != nil {
		h.Suspended(shard)
	}
}

func (h *Hooks) resumed(rows int) {
	if h.Resumed != nil && rows > 0 {
		h.Resumed(rows)
	}
}

// shardID names a shard in the cache.
type shardID struct {
	key shardcache.Key
	num int
}

// maxCommits bounds the shard commits (msync, fsync, checksum) running at
// once, off the workers.
const maxCommits = 2

// Commits is the registry of shard commits a loader shares between its
// Epochs: it runs each commit on a goroutine of its own, so neither a
// worker nor gRPC (a batch's Release) waits for the disk, and it tells a
// later Epoch of the same key that a complete shard is on its way into the
// cache. The zero value is not usable; call NewCommits.
type Commits struct {
	bg    sync.WaitGroup // the commit goroutines
	slots chan struct{}  // semaphore: at most maxCommits commits at once

	mu      sync.Mutex                // guards pending; a leaf lock, taken under Shard.mu
	pending map[shardID]chan struct{} // complete shards not yet committed, closed when their commit is over
}

// NewCommits returns an empty registry.
func NewCommits() *Commits {
	return &Commits{slots: make(chan struct{}, maxCommits), pending: map[shardID]chan struct{}{}}
}

// Wait waits for the commits running.
func (c *Commits) Wait() { c.bg.Wait() }

// run commits on a goroutine of c's once a commit slot is free.
func (c *Commits) run(commit func()) {
	c.bg.Go(func() {
		c.slots <- struct{}{}
		defer func() { <-c.slots }()
		commit()
	})
}

// start records that shard id is complete and will be committed.
func (c *Commits) start(id shardID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[id] == nil {
		c.pending[id] = make(chan struct{})
	}
}

// end records that shard id's commit is over, waking its waiters.
func (c *Commits) end(id shardID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.pending[id]; ch != nil {
		close(ch)
		delete(c.pending, id)
	}
}

// committing returns a channel closed when the commit of shard id is over, or
// nil when none is pending.
func (c *Commits) committing(id shardID) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending[id]
}
