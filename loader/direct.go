package loader

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/loaderd/loaderd/service"
)

// A directBatch is a batch computed straight into memory: its rows are
// pooled row buffers, filled by workers, never written to the cache.
type directBatch struct {
	b    *service.Batch
	bufs []*[]byte
	wg   sync.WaitGroup // rows still being computed

	mu  sync.Mutex // guards err
	err error      // the first row's failure
}

func (db *directBatch) fail(err error) {
	db.mu.Lock()
	if db.err == nil {
		db.err = err
	}
	db.mu.Unlock()
}

// streamDirect serves epoch e of d without the cache, for an epoch larger
// than the whole cache budget: a shuffled batch touches nearly every shard,
// so such an epoch could never be materialised. Each batch's rows are
// computed into row buffers (the same bytes as the cached path: the same
// computeRow) and sent; at most InFlightBatches batches are computed ahead
// of the one being sent, so memory stays bounded.
func (l *Loader) streamDirect(ctx context.Context, d *dataset, o *Order, pool int, send func(*service.Batch) error) error {
	e := o.Epoch
	queue := make(chan *directBatch, l.opts.InFlightBatches)
	var tasks sync.WaitGroup
	defer tasks.Wait() // after the errgroup's cancel: abandoned rows return at once
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { // producer: hand each batch's rows to the workers
		defer close(queue)
		for k := range o.Batches() {
			idx := o.Batch(k)
			db := &directBatch{b: &service.Batch{
				Index:  make([]uint64, len(idx)),
				Label:  make([]int64, len(idx)),
				Images: make([][]byte, len(idx)),
			}}
			for row, i := range idx {
				buf := l.rowScratch()
				db.bufs = append(db.bufs, buf)
				db.b.Images[row] = *buf
				db.wg.Add(1)
				tasks.Add(1)
				ok := l.sched.Submit(gctx, pool, workUncached.high(), func() {
					defer tasks.Done()
					defer db.wg.Done()
					if err := gctx.Err(); err != nil {
						db.fail(err)
						return
					}
					j, err := l.computeRow(d, e, i, *buf)
					if err != nil {
						db.fail(err)
						return
					}
					db.b.Index[row], db.b.Label[row] = uint64(j), d.Samples[j].Label
					l.met.computed.WithLabelValues(workUncached.String()).Inc()
					l.met.misses.Inc() // streamed uncached: every row is cold
				})
				if !ok {
					db.wg.Done()
					tasks.Done()
					if err := context.Cause(gctx); err != nil {
						return err
					}
					return fmt.Errorf("loader: %w", service.ErrUnavailable) // closed
				}
			}
			select {
			case queue <- db:
			case <-gctx.Done():
				return context.Cause(gctx)
			}
		}
		return nil
	})
	g.Go(func() error { // consumer: send the batches in order
		for db := range queue {
			db.wg.Wait()
			if db.err != nil {
				return db.err
			}
			bufs := db.bufs
			db.b.Release = sync.OnceFunc(func() {
				for _, b := range bufs {
					l.scratch.Put(b)
				}
			})
			if err := send(db.b); err != nil {
				return err
			}
		}
		return nil
	})
	return g.Wait()
}
