package loader

import (
	"context"
	"sync"

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
	l.noteRequest(d, req)
	if b := l.cache.Budget(); b > 0 && l.epochBytes(d) > b {
		return l.streamDirect(ctx, d, o, pool, send)
	}
	ep, release, err := l.acquire(d, req.Epoch, workStream)
	if err != nil {
		return err
	}
	defer release()
	return l.pipeline(ctx, ep, o, pool, func(b *gathered) error { return send(b.Batch) })
}

// pipeline produces the batches of o from ep and hands each, in order, to
// consume, which releases it. A producer claims and submits the rows of up
// to Options.InFlightBatches batches (and at least two rows per worker)
// ahead of the batch consumed, so workers stay busy while consume blocks.
func (l *Loader) pipeline(ctx context.Context, ep *openEpoch, o *Order, pool int, consume func(*gathered) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	st := &runner{l: l, kind: workStream, pool: pool, fail: cancel}
	defer st.tasks.Wait() // after g.Wait has cancelled gctx: abandoned tasks return at once

	nb := o.Batches()
	// Read ahead InFlightBatches batches, and at least two rows per worker
	// so that small batches keep every worker busy too.
	slots := make(chan struct{}, max(l.opts.InFlightBatches, (2*l.opts.Workers+o.BatchSize-1)/o.BatchSize))
	cold := &coldRows{m: map[int]int{}}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { // producer: claim and submit the rows of the batches ahead
		for k := range nb {
			select {
			case slots <- struct{}{}:
			case <-gctx.Done():
				return nil
			}
			for _, i := range o.Batch(k) {
				sh, p := ep.ShardOf(i)
				claimed, err := sh.Request(p, true)
				if err != nil {
					return err
				}
				if claimed {
					cold.add(i)
					if !st.submit(gctx, ep, sh, p) {
						return st.stopped(gctx)
					}
				}
			}
		}
		return nil
	})
	g.Go(func() error { // consumer: gather each batch and hand it on
		for k := range nb {
			b, err := st.gather(gctx, ep, o.Batch(k), cold)
			if err != nil {
				return err
			}
			if err := consume(b); err != nil {
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

// coldRows holds the samples a stream's producer claimed and computes:
// the rows that were not in the cache nor being computed by other work.
type coldRows struct {
	mu sync.Mutex  // guards m
	m  map[int]int // claims not yet gathered, by sample index
}

func (c *coldRows) add(i int) {
	c.mu.Lock()
	c.m[i]++
	c.mu.Unlock()
}

// take reports whether sample i was claimed cold, forgetting one claim.
func (c *coldRows) take(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[i] == 0 {
		return false
	}
	if c.m[i]--; c.m[i] == 0 {
		delete(c.m, i)
	}
	return true
}

// gathered is a batch with, for each row, where it lies: the file holding
// it (the epoch.Slot's File, valid until Release), its row there and the
// offset of its image.
type gathered struct {
	*service.Batch
	File   []string
	Row    []int64
	Offset []int64
}

// gather waits for the rows of samples idx of ep and returns them as a
// batch holding references to the mappings they live in. It counts each
// row a cache hit, or a miss when this stream computed it (cold claims,
// by the producer or here).
func (r *runner) gather(ctx context.Context, ep *openEpoch, idx []int, cold *coldRows) (*gathered, error) {
	n := len(idx)
	b := &service.Batch{Index: make([]uint64, n), Label: make([]int64, n), Images: make([][]byte, n)}
	g := &gathered{Batch: b, File: make([]string, n), Row: make([]int64, n), Offset: make([]int64, n)}
	var refs []func()
	drop := func() {
		for _, rel := range refs {
			rel()
		}
	}
	cached, misses := 0, 0
	for row, i := range idx {
		sh, p := ep.ShardOf(i)
		miss := false
		for {
			s, err := sh.Acquire(p, true, true)
			if err != nil {
				drop()
				return nil, err
			}
			if s.Ready {
				b.Index[row], b.Label[row], b.Images[row] = s.Index, s.Label, s.Img
				g.File[row], g.Row[row], g.Offset[row] = s.File, int64(p), s.Offset
				if s.Release != nil {
					refs = append(refs, s.Release)
				}
				if s.Cached {
					cached++
				}
				if cold.take(i) || miss { // the producer adds a claim before its row can be ready
					misses++
				}
				break
			}
			if s.Claimed { // nobody computes it (not claimed yet, or its claimer left): we do
				miss = true
				if !r.submit(ctx, ep, sh, p) {
					drop()
					return nil, r.stopped(ctx)
				}
				continue
			}
			select {
			case <-s.Wait:
			case <-ctx.Done():
				drop()
				return nil, context.Cause(ctx)
			}
		}
	}
	r.l.met.served.Add(float64(cached))
	r.l.met.hits.Add(float64(len(idx) - misses))
	r.l.met.misses.Add(float64(misses))
	var once sync.Once
	b.Release = func() { once.Do(drop) }
	return g, nil
}
