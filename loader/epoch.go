package loader

import (
	"errors"
	"fmt"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// An epoch is one epoch of a dataset while something uses it: streams,
// a precompute, the prefetcher. It holds the epoch's shards, their
// mappings and the writers of shards in production; when its last user
// leaves, mappings are released and unfinished writers dropped.
type epoch struct {
	l      *Loader
	d      *dataset
	id     epochID
	key    shardcache.Key
	schema *arrow.Schema
	n      int // samples
	size   int // rows per shard
	shards []*shard
	refs   int // users, under l.mu
}

// rowState is where a row of a shard in production stands.
type rowState uint8

const (
	rowAbsent  rowState = iota
	rowClaimed          // a worker computes it
	rowReady            // written into the writer's mapping
	rowFailed           // cannot be computed (policy fail)
)

// shardMode is where a shard stands.
type shardMode uint8

const (
	modeUnknown    shardMode = iota // not looked up; or not in the cache
	modeCached                      // committed in the cache, not mapped here
	modeMapped                      // committed and mapped: rows are served from view
	modeWriting                     // a writer is filled row by row
	modeCommitting                  // every row written; Commit runs
)

// A shard is shard num of an epoch: samples [lo, lo+n).
type shard struct {
	ep     *epoch
	num    int
	lo, n  int
	layout *arrowio.ShardLayout

	mu      sync.Mutex
	mode    shardMode
	m       *shardcache.Mapping // modeMapped: the epoch's reference
	view    *arrowio.ShardView
	w       *shardcache.Writer // modeWriting, modeCommitting
	rows    []rowState
	index   []uint64 // modeWriting: what each ready row carries
	label   []int64
	errs    map[int]error
	ready   int
	wrefs   int   // batches holding rows of w
	closing bool  // the epoch's users are gone: drop w once unreferenced
	err     error // the last commit's failure
	changed chan struct{}
}

// newEpoch builds the state of epoch e of d; the caller holds l.mu.
func (l *Loader) newEpoch(d *dataset, e int) (*epoch, error) {
	s, err := l.schema(d, e)
	if err != nil {
		return nil, err
	}
	ep := &epoch{l: l, d: d, id: epochID{d.Name, e}, key: l.key(d, e), schema: s, n: d.Len(), size: l.opts.ShardSize}
	layouts := map[int]*arrowio.ShardLayout{}
	for lo, num := 0, 0; lo < ep.n; lo, num = lo+ep.size, num+1 {
		rows := min(ep.size, ep.n-lo)
		lay := layouts[rows]
		if lay == nil {
			if lay, err = arrowio.NewShardLayout(s, rows); err != nil {
				return nil, fmt.Errorf("loader: shard layout: %w", err)
			}
			layouts[rows] = lay
		}
		ep.shards = append(ep.shards, &shard{ep: ep, num: num, lo: lo, n: rows, layout: lay, changed: make(chan struct{})})
	}
	return ep, nil
}

// userKind is who acquires an epoch.
type userKind uint8

const (
	userStream     userKind = iota // pins; marks the epoch live
	userPrecompute                 // pins
	userPrefetch                   // does not pin: the budget may evict it
)

// acquire returns epoch e of d for a new user, pinned in the cache until
// the returned release unless the user is the prefetcher. A stream also
// marks the epoch live, clears an explicit eviction and wakes the
// prefetcher.
func (l *Loader) acquire(d *dataset, e int, user userKind) (*epoch, func(), error) {
	stream := user == userStream
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil, fmt.Errorf("loader: %w", service.ErrUnavailable)
	}
	id := epochID{d.Name, e}
	ep := l.epochs[id]
	if ep == nil {
		var err error
		if ep, err = l.newEpoch(d, e); err != nil {
			l.mu.Unlock()
			return nil, nil, err
		}
		l.epochs[id] = ep
	}
	ep.refs++
	if stream {
		l.live[id]++
		delete(l.evicted, id)
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	l.mu.Unlock()
	unpin := func() {}
	if user != userPrefetch {
		unpin = l.cache.Pin(ep.key)
	}
	var once sync.Once
	return ep, func() { once.Do(func() { l.releaseEpoch(ep, stream); unpin() }) }, nil
}

// releaseEpoch drops a user of ep; the last one releases its shards.
func (l *Loader) releaseEpoch(ep *epoch, stream bool) {
	l.mu.Lock()
	if stream {
		if l.live[ep.id]--; l.live[ep.id] <= 0 {
			delete(l.live, ep.id)
		}
	}
	ep.refs--
	last := ep.refs == 0
	if last {
		delete(l.epochs, ep.id)
	}
	l.mu.Unlock()
	if last {
		for _, sh := range ep.shards {
			sh.close()
		}
	}
}

// shardOf returns the shard of sample i and its row there.
func (ep *epoch) shardOf(i int) (*shard, int) {
	sh := ep.shards[i/ep.size]
	return sh, i - sh.lo
}

// broadcast wakes everything waiting on sh; the caller holds sh.mu.
func (sh *shard) broadcast() {
	close(sh.changed)
	sh.changed = make(chan struct{})
}

// lookup finds out whether sh is committed in the cache, mapping it when
// open is set; the caller holds sh.mu. A corrupt shard (the cache has
// removed it) counts as absent. It returns a channel to wait on when the
// shard is absent but being committed by an earlier epoch's writer.
func (sh *shard) lookup(open bool) (<-chan struct{}, error) {
	l, c := sh.ep.l, sh.ep.l.cache
	if sh.mode == modeUnknown && c.Has(sh.ep.key, sh.num) {
		sh.mode = modeCached
	}
	if sh.mode == modeUnknown {
		// A complete shard of an earlier user of this epoch may be on its
		// way into the cache: wait for it rather than compute it again.
		if ch := l.pendingCommit(shardID{sh.ep.key, sh.num}); ch != nil {
			return ch, nil
		}
	}
	if sh.mode != modeCached || !open {
		return nil, nil
	}
	m, err := c.Open(sh.ep.key, sh.num)
	switch {
	case errors.Is(err, shardcache.ErrCorrupt), errors.Is(err, shardcache.ErrMiss):
		sh.ep.l.log.Warn("loader: cached shard unusable; recomputing", "dataset", sh.ep.d.Name, "epoch", sh.ep.id.epoch, "shard", sh.num, "err", err)
		sh.mode = modeUnknown
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("loader: open shard %d of epoch %d: %w", sh.num, sh.ep.id.epoch, err)
	}
	v, err := arrowio.OpenShard(m.Data(), sh.ep.schema, sh.n)
	if err != nil {
		m.Release()
		return nil, fmt.Errorf("loader: shard %d of epoch %d: %w", sh.num, sh.ep.id.epoch, err)
	}
	sh.m, sh.view, sh.mode = m, v, modeMapped
	return nil, nil
}

// startWriter creates the shard's file in the cache; the caller holds sh.mu.
func (sh *shard) startWriter() error {
	w, err := sh.ep.l.cache.Create(sh.ep.key, sh.num, sh.layout.Size, sh.layout.WriteSkeleton)
	if errors.Is(err, shardcache.ErrBudget) {
		return fmt.Errorf("loader: shard %d of epoch %d: %w: %w", sh.num, sh.ep.id.epoch, service.ErrExhausted, err)
	} else if err != nil {
		return fmt.Errorf("loader: shard %d of epoch %d: %w", sh.num, sh.ep.id.epoch, err)
	}
	sh.w, sh.mode = w, modeWriting
	sh.rows = make([]rowState, sh.n)
	sh.index = make([]uint64, sh.n)
	sh.label = make([]int64, sh.n)
	sh.errs = map[int]error{}
	sh.ready = 0
	sh.err = nil
	return nil
}

// A slot is what acquire found for a row.
type slot struct {
	ready   bool
	img     []byte // ready: the row's image bytes
	index   uint64
	label   int64
	release func()          // ready: drops the reference that keeps img valid
	claimed bool            // claim granted: the caller computes the row
	wait    <-chan struct{} // neither: closed when the shard changes
	cached  bool            // ready and served from a committed shard
}

// acquire returns row p: ready (with a reference the caller releases),
// claimed for the caller (when claim is set and nobody computes it), or a
// channel to wait on. A committed shard is mapped on first use when serve
// is set; otherwise its rows count as ready without a reference.
func (sh *shard) acquire(p int, claim, serve bool) (slot, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if wait, err := sh.lookup(serve); err != nil || wait != nil {
		return slot{wait: wait}, err
	}
	switch sh.mode {
	case modeCached:
		return slot{ready: true, cached: true}, nil
	case modeMapped:
		sh.m.Retain()
		return slot{ready: true, cached: true, img: sh.view.Row(p), index: sh.view.Index(p), label: sh.view.Label(p), release: sh.m.Release}, nil
	case modeCommitting:
		return slot{wait: sh.changed}, nil
	case modeUnknown:
		if !claim {
			return slot{wait: sh.changed}, nil
		}
		if err := sh.startWriter(); err != nil {
			return slot{}, err
		}
	}
	switch sh.rows[p] {
	case rowReady:
		var release func()
		if serve {
			sh.wrefs++
			release = sh.unref
		}
		return slot{ready: true, img: sh.layout.Row(sh.w.Data(), p), index: sh.index[p], label: sh.label[p], release: release}, nil
	case rowFailed:
		return slot{}, sh.errs[p]
	case rowAbsent:
		if claim {
			sh.rows[p] = rowClaimed
			return slot{claimed: true}, nil
		}
	}
	return slot{wait: sh.changed}, nil
}

// finish records the outcome of a claimed row: written with the index and
// label it carries, failed, or (err == errAbandoned) given up unwritten.
// It commits the shard when this was its last row and no batch holds it.
func (sh *shard) finish(p int, index uint64, label int64, err error) {
	sh.mu.Lock()
	switch {
	case err == nil:
		sh.layout.SetIndex(sh.w.Data(), p, index)
		sh.layout.SetLabel(sh.w.Data(), p, label)
		sh.rows[p], sh.index[p], sh.label[p] = rowReady, index, label
		if sh.ready++; sh.ready == sh.n {
			sh.ep.l.startPending(shardID{sh.ep.key, sh.num})
		}
	case errors.Is(err, errAbandoned):
		sh.rows[p] = rowAbsent
	default:
		sh.rows[p], sh.errs[p] = rowFailed, err
	}
	sh.broadcast()
	commit := sh.ready == sh.n && sh.wrefs == 0
	if commit {
		sh.mode = modeCommitting
	}
	sh.mu.Unlock()
	if commit {
		sh.commitLater()
	}
}

// maxCommits bounds the shard commits (msync, fsync, checksum) running at
// once, off the workers.
const maxCommits = 2

// commitLater commits sh on a goroutine of the loader's, so neither a
// worker nor gRPC (Batch.Release) waits for the disk.
func (sh *shard) commitLater() {
	l := sh.ep.l
	l.bg.Go(func() {
		l.commits <- struct{}{}
		defer func() { <-l.commits }()
		sh.commit()
	})
}

// errAbandoned marks a claimed row given up because its requester left.
var errAbandoned = errors.New("loader: row abandoned")

// unref drops a batch's reference to the writer's mapping.
func (sh *shard) unref() {
	sh.mu.Lock()
	sh.wrefs--
	if sh.wrefs > 0 || sh.mode != modeWriting {
		sh.mu.Unlock()
		return
	}
	if sh.ready == sh.n {
		sh.mode = modeCommitting
		sh.mu.Unlock()
		sh.commitLater()
		return
	}
	if sh.closing {
		sh.dropWriter()
	}
	sh.mu.Unlock()
}

// commit makes the shard visible in the cache; the caller has set
// modeCommitting, so nothing reads or writes the writer's mapping.
func (sh *shard) commit() {
	err := sh.w.Commit()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.w, sh.rows, sh.index, sh.label, sh.errs = nil, nil, nil, nil, nil
	if err != nil {
		sh.ep.l.log.Error("loader: commit shard", "dataset", sh.ep.d.Name, "epoch", sh.ep.id.epoch, "shard", sh.num, "err", err)
		sh.mode, sh.err = modeUnknown, err
	} else {
		sh.mode = modeCached
	}
	sh.broadcast()
	sh.ep.l.endPending(shardID{sh.ep.key, sh.num})
}

// shardID names a shard in the cache.
type shardID struct {
	key shardcache.Key
	num int
}

// startPending records that shard id is complete and will be committed.
func (l *Loader) startPending(id shardID) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if l.pending[id] == nil {
		l.pending[id] = make(chan struct{})
	}
}

// endPending records that shard id's commit is over, waking its waiters.
func (l *Loader) endPending(id shardID) {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	if ch := l.pending[id]; ch != nil {
		close(ch)
		delete(l.pending, id)
	}
}

// pendingCommit returns a channel closed when the commit of shard id is
// over, or nil when none is pending.
func (l *Loader) pendingCommit(id shardID) <-chan struct{} {
	l.pmu.Lock()
	defer l.pmu.Unlock()
	return l.pending[id]
}

// dropWriter abandons an unfinished writer; the caller holds sh.mu.
func (sh *shard) dropWriter() {
	sh.w.Abort()
	sh.w, sh.rows, sh.index, sh.label, sh.errs = nil, nil, nil, nil, nil
	sh.mode = modeUnknown
	sh.broadcast()
}

// close runs when the epoch's last user leaves: no row is claimed then.
func (sh *shard) close() {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.closing = true
	switch sh.mode {
	case modeMapped:
		sh.m.Release()
		sh.m, sh.view, sh.mode = nil, nil, modeCached
	case modeWriting:
		if sh.wrefs == 0 {
			sh.dropWriter()
		}
	}
}
