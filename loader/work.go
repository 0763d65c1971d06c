package loader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/service"
)

// work is what rows are computed for. It decides the rows' metric label,
// the priority of their tasks and whether their epoch is pinned in the
// cache.
type work uint8

const (
	workStream     work = iota // a stream's rows
	workPrecompute             // the precompute action
	workPrefetch               // Run's background prefetch
	workUncached               // a stream of an epoch larger than the cache budget
)

// works lists every kind of work, for the metric's labels.
var works = []work{workStream, workPrecompute, workPrefetch, workUncached}

// String returns the kind's label in loaderd_rows_computed_total.
func (w work) String() string {
	switch w {
	case workStream:
		return "stream"
	case workPrecompute:
		return "precompute"
	case workPrefetch:
		return "prefetch"
	case workUncached:
		return "uncached"
	}
	return fmt.Sprintf("work(%d)", uint8(w))
}

// high reports whether the kind's tasks go ahead of background work: a
// trainer waits for them.
func (w work) high() bool { return w == workStream || w == workUncached }

// pins reports whether the kind pins its epoch in the cache while it works.
// The prefetcher does not: the budget may evict what it wrote.
func (w work) pins() bool { return w == workStream || w == workPrecompute }

// live reports whether the kind marks its epoch streamed: prefetch follows
// it, and an explicit eviction of it is forgotten.
func (w work) live() bool { return w == workStream }

// An openEpoch is an epoch in use, with its users counted.
type openEpoch struct {
	*epoch.Epoch
	d    *dataset
	id   epochID
	refs int // users, under Loader.mu
}

// acquire returns epoch e of d for a new user of kind w, pinned in the
// cache until the returned release when w pins. A stream also marks the
// epoch live, clears an explicit eviction and wakes the prefetcher.
func (l *Loader) acquire(d *dataset, e int, w work) (*openEpoch, func(), error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, nil, fmt.Errorf("loader: %w", service.ErrUnavailable)
	}
	id := idOf(d, e)
	for l.closing[id] != nil {
		// The epoch's last user left and its shards are being kept
		// (partial shards suspended, some once gRPC releases the last
		// batches): a new Epoch would find their files still held and
		// compute their rows again. Wait for that, a while. Then look
		// again: while this user waited, another may have opened the
		// epoch and left it, and its close keeps the shards now.
		old := l.closing[id]
		l.mu.Unlock()
		if l.beforeCloseWait != nil {
			l.beforeCloseWait(old)
		}
		t := time.NewTimer(closeWait)
		select {
		case <-old.Released():
		case <-t.C:
			l.log.Warn("loader: an epoch's last batches are still held; its partial shards' rows may be computed again", "dataset", d.Name, "epoch", e)
		}
		t.Stop()
		l.mu.Lock()
		if l.closing[id] == old {
			delete(l.closing, id)
		}
		if l.closed {
			l.mu.Unlock()
			return nil, nil, fmt.Errorf("loader: %w", service.ErrUnavailable)
		}
	}
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
	if w.live() {
		l.live[id]++
		l.recent[d.Name] = id
		delete(l.evicted, id)
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
	l.mu.Unlock()
	unpin := func() {}
	if w.pins() {
		unpin = l.cache.Pin(ep.Key())
	}
	var once sync.Once
	return ep, func() { once.Do(func() { l.releaseEpoch(ep, w); unpin() }) }, nil
}

// newEpoch lays out epoch e of d; the caller holds l.mu.
func (l *Loader) newEpoch(d *dataset, e int) (*openEpoch, error) {
	s, err := l.schema(d, e)
	if err != nil {
		return nil, err
	}
	ep, err := epoch.New(&epoch.Options{
		Cache:     l.cache,
		Commits:   l.commits,
		Logger:    l.log.With("dataset", d.Name, "epoch", e),
		Key:       l.key(d, e),
		Schema:    s,
		Samples:   d.Len(),
		ShardSize: l.opts.ShardSize,
		Hooks:     l.hooks(d, e),
	})
	if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	return &openEpoch{Epoch: ep, d: d, id: idOf(d, e)}, nil
}

// releaseEpoch drops a user of ep of kind w; the last one closes it, out of
// l.mu (Loader.mu and a shard's lock are never held together).
func (l *Loader) releaseEpoch(ep *openEpoch, w work) {
	l.mu.Lock()
	if w.live() {
		if l.live[ep.id]--; l.live[ep.id] <= 0 {
			delete(l.live, ep.id)
		}
	}
	ep.refs--
	last := ep.refs == 0
	if last {
		delete(l.epochs, ep.id)
		for id, old := range l.closing { // forget the epochs released since
			select {
			case <-old.Released():
				delete(l.closing, id)
			default:
			}
		}
		l.closing[ep.id] = ep // a new user waits for ep.Released
	}
	l.mu.Unlock()
	if last {
		ep.Close()
	}
}

// closeWait bounds how long a new user of an epoch waits for the previous
// users' batches to be released (a dead connection may hold them until the
// garbage collector frees them): then it computes what they hold again.
const closeWait = 10 * time.Second

// A runner computes rows of one kind of work for a stream or a precompute
// and tracks the tasks it submitted, so its owner can wait for them.
type runner struct {
	l    *Loader
	kind work
	pool int // the workers' pool (gpu.Placement); -1 the default
	// fail ends the owner's work with the error of a row that failed for
	// now (a file unreadable or changed, a full disk): the shard forgets
	// such a failure, so the runner that asked for the row reports it.
	fail  context.CancelCauseFunc
	tasks sync.WaitGroup // tasks submitted and not yet returned
	done  atomic.Int64   // rows computed
}

// submit hands the claimed row p of sh in ep to a worker, or, when the
// shared tier holds it, to a fetcher that reads it from there (a worker
// computes it if that fails); if it cannot (ctx done, loader closed) it
// gives the claim back and reports false. A task that starts after ctx is
// done gives its claim back too.
func (r *runner) submit(ctx context.Context, ep *openEpoch, sh *epoch.Shard, p int) bool {
	if r.l.inTier(ctx, ep, sh, p) {
		return r.fetch(ctx, ep, sh, p)
	}
	return r.compute(ctx, ep, sh, p)
}

// fetch reads the claimed row p of sh from the shared tier on a goroutine
// of its own, at most maxFetches at once for streams and maxBgFetches for
// prefetch and precompute, apart (reads wait for the network, not for a
// CPU, so they do not take workers), and hands the row to compute when the
// tier fails it (a failed read is warned of then), or gives the claim back
// when the requester left meanwhile (a debug line says so: nothing is
// computed).
func (r *runner) fetch(ctx context.Context, ep *openEpoch, sh *epoch.Shard, p int) bool {
	l := r.l
	slots := l.fetchSlots
	if !r.kind.high() { // background reads never hold up a stream's
		slots = l.bgFetchSlots
	}
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		sh.Finish(p, 0, 0, epoch.ErrAbandoned)
		return false
	}
	r.tasks.Go(func() {
		img := l.rowScratch()
		index, label, ok, err := l.fromTier(ctx, ep, sh, p, *img)
		if ok {
			ok = sh.Store(p, *img) == nil
		}
		l.scratch.Put(img)
		<-slots
		s := sh.Lo() / l.opts.ShardSize
		switch {
		case ok:
			r.done.Add(1)
			sh.Finish(p, index, label, nil)
		case ctx.Err() != nil: // the requester left: nobody computes the row
			if err != nil {
				l.log.Debug("loader: read from the shared tier ended; its requester left, the row is given up", "shard", s, "row", p, "err", err)
			}
			sh.Finish(p, 0, 0, epoch.ErrAbandoned)
		default:
			if errors.Is(err, errTierListing) {
				l.log.Debug("loader: shared tier unavailable; computing", "shard", s, "row", p, "err", err)
			} else if err != nil {
				l.log.Warn("loader: read from the shared tier; computing instead", "shard", s, "row", p, "err", err)
			}
			r.compute(ctx, ep, sh, p) // gives the claim back itself if it cannot
		}
	})
	return true
}

// compute hands the claimed row p of sh in ep to a worker, which computes
// it.
func (r *runner) compute(ctx context.Context, ep *openEpoch, sh *epoch.Shard, p int) bool {
	l, d, e := r.l, ep.d, ep.id.epoch
	r.tasks.Add(1)
	ok := l.sched.Submit(ctx, r.pool, r.kind.high(), func() {
		defer r.tasks.Done()
		if ctx.Err() != nil {
			sh.Finish(p, 0, 0, epoch.ErrAbandoned)
			return
		}
		img := l.rowScratch()
		defer l.scratch.Put(img)
		j, err := l.computeRow(d, e, sh.Lo()+p, *img)
		if err == nil {
			err = sh.Store(p, *img)
		}
		if err != nil {
			if !errors.Is(err, service.ErrDataLoss) {
				r.fail(err) // before Finish wakes the row's waiters
			}
			sh.Finish(p, 0, 0, err)
			return
		}
		l.met.computed.WithLabelValues(r.kind.String()).Inc()
		r.done.Add(1)
		sh.Finish(p, uint64(j), d.Samples[j].Label, nil)
	})
	if !ok {
		r.tasks.Done()
		sh.Finish(p, 0, 0, epoch.ErrAbandoned)
	}
	return ok
}

// stopped is the error of a runner whose submit failed.
func (r *runner) stopped(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return fmt.Errorf("loader: %w", service.ErrUnavailable)
}
