package loader

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/loaderd/loaderd/service"
)

// Stream sends the batches of req in order (service.Source). Rows come
// from committed shards or from shards in production once written; rows
// nobody computes yet are claimed and computed by workers ahead of
// background work. A producer reads up to Options.InFlightBatches batches
// (and at least two rows per worker) ahead of the batch being sent, so
// workers stay busy while send blocks. An epoch larger than the whole
// cache budget is streamed without the cache (streamDirect).
func (l *Loader) Stream(ctx context.Context, req service.Request, send func(*service.Batch) error) error {
	d, o, pool, err := l.resolve(req)
	if err != nil {
		return err
	}
	if b := l.cache.Budget(); b > 0 && l.epochBytes(d) > b {
		return l.streamDirect(ctx, d, o, pool, send)
	}
	ep, release, err := l.acquire(d, req.Epoch, userStream)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	st := &runner{l: l, ep: ep, pool: pool, high: true, kind: kindStream, ctx: ctx}
	defer st.tasks.Wait() // after cancel: abandoned tasks return at once
	defer cancel()

	nb := o.Batches()
	// Read ahead InFlightBatches batches, and at least two rows per worker
	// so that small batches keep every worker busy too.
	slots := make(chan struct{}, max(l.opts.InFlightBatches, (2*l.opts.Workers+o.BatchSize-1)/o.BatchSize))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { // producer: claim and submit the rows of the batches ahead
		for k := range nb {
			select {
			case slots <- struct{}{}:
			case <-gctx.Done():
				return nil
			}
			for _, i := range o.Batch(k) {
				sh, p := ep.shardOf(i)
				claimed, err := sh.request(p, true)
				if err != nil {
					return err
				}
				if claimed && !st.submit(gctx, ep, sh, p) {
					return st.stopped(gctx)
				}
			}
		}
		return nil
	})
	g.Go(func() error { // consumer: gather each batch and send it
		for k := range nb {
			b, err := st.gather(gctx, o.Batch(k))
			if err != nil {
				return err
			}
			if err := send(b); err != nil {
				return err
			}
			select { // the producer may stop before taking batch k's slot
			case <-slots:
			case <-gctx.Done():
				return context.Cause(gctx)
			}
		}
		return nil
	})
	return g.Wait()
}

// A runner computes rows for a stream or a precompute; it
// tracks the tasks it submitted so its owner can wait for them.
type runner struct {
	l     *Loader
	ep    *epoch // the stream's epoch
	pool  int    // stream's pool; -1 any
	high  bool   // stream priority
	kind  string // metric label
	ctx   context.Context
	tasks sync.WaitGroup
	done  atomic.Int64 // rows computed
}

// submit hands the claimed row p of sh to a worker; if it cannot (ctx
// done, loader closed) it gives the claim back and reports false.
func (r *runner) submit(ctx context.Context, ep *epoch, sh *shard, p int) bool {
	l, d, e := r.l, ep.d, ep.id.epoch
	r.tasks.Add(1)
	ok := l.sched.submit(ctx, r.pool, r.high, func() {
		defer r.tasks.Done()
		if r.ctx.Err() != nil {
			sh.finish(p, 0, 0, errAbandoned)
			return
		}
		img := l.rowScratch()
		defer l.scratch.Put(img)
		j, err := l.computeRow(d, e, sh.lo+p, *img)
		if err == nil {
			err = sh.store(p, *img)
		}
		if err != nil {
			sh.finish(p, 0, 0, err)
			return
		}
		l.met.computed.WithLabelValues(r.kind).Inc()
		r.done.Add(1)
		sh.finish(p, uint64(j), d.Samples[j].Label, nil)
	})
	if !ok {
		r.tasks.Done()
		sh.finish(p, 0, 0, errAbandoned)
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

// gather waits for the rows of samples idx and returns them as a batch
// holding references to the mappings they live in.
func (r *runner) gather(ctx context.Context, idx []int) (*service.Batch, error) {
	b := &service.Batch{Index: make([]uint64, len(idx)), Label: make([]int64, len(idx)), Images: make([][]byte, len(idx))}
	var refs []func()
	drop := func() {
		for _, rel := range refs {
			rel()
		}
	}
	cached := 0
	for row, i := range idx {
		sh, p := r.ep.shardOf(i)
		for {
			s, err := sh.acquire(p, true, true)
			if err != nil {
				drop()
				return nil, err
			}
			if s.ready {
				b.Index[row], b.Label[row], b.Images[row] = s.index, s.label, s.img
				if s.release != nil {
					refs = append(refs, s.release)
				}
				if s.cached {
					cached++
				}
				break
			}
			if s.claimed { // nobody computes it (its claimer left): we do
				if !r.submit(ctx, r.ep, sh, p) {
					drop()
					return nil, r.stopped(ctx)
				}
				continue
			}
			select {
			case <-s.wait:
			case <-ctx.Done():
				drop()
				return nil, ctx.Err()
			}
		}
	}
	r.l.met.served.Add(float64(cached))
	var once sync.Once
	b.Release = func() { once.Do(drop) }
	return b, nil
}

// request claims row p of sh for the caller when nobody has it yet; it
// reports false when the row is cached, ready or claimed by another. A
// committed shard is mapped here, ahead of its rows being gathered.
func (sh *shard) request(p int, open bool) (bool, error) {
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
