package loader

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/loaderd/loaderd/service"
)

// Node-aware work. On a job of many nodes, each loaderd serves the ranks of
// its node. What it computes for a stream is already only what that
// stream's rank reads; what it prefetches, it learns from the requests it
// gets: the job's shape (world size, batch size, drop_last, shuffle) and
// the ranks asking. Prefetch then computes, for the next epochs, only the
// rows of those ranks (SPEC §3 says which), and the shards it fills stay
// partial: kept in the cache (epoch/shard.go), their rows uploaded to the
// shared tier as parts. Across the nodes of the job each row is computed
// once.

// A jobShape is what the loader has learned of the job reading a dataset:
// its world size, batch size, drop_last and shuffle, and which ranks asked
// for each epoch. The next epochs of epoch e are prefetched for the ranks
// that read e: after a failover, a node that took over ranks prefetches
// theirs too, and a node whose ranks moved away stops.
type jobShape struct {
	world, batch      int
	dropLast, shuffle bool
	ranks             map[int]bool         // of the epoch asked for (shapeOf)
	byEpoch           map[int]map[int]bool // ranks that asked, by epoch; the last few epochs
}

// shapeEpochs is how many streamed epochs a jobShape remembers.
const shapeEpochs = 4

// String is the shape's key: the same ranks of the same job give the same
// string.
func (s *jobShape) String() string {
	rs := slices.Sorted(maps.Keys(s.ranks))
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = strconv.Itoa(r)
	}
	return fmt.Sprintf("w%d/b%d/d%v/s%v/r%s", s.world, s.batch, s.dropLast, s.shuffle, strings.Join(parts, ","))
}

// noteRequest learns the shape of the job from a stream's request; a
// request of another shape (a new job) starts over.
func (l *Loader) noteRequest(d *dataset, req service.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.shapes[d.Name]
	if s == nil || s.world != req.WorldSize || s.batch != req.BatchSize || s.dropLast != req.DropLast || s.shuffle != req.Shuffle {
		s = &jobShape{world: req.WorldSize, batch: req.BatchSize, dropLast: req.DropLast, shuffle: req.Shuffle, byEpoch: map[int]map[int]bool{}}
		l.shapes[d.Name] = s
	}
	rs := s.byEpoch[req.Epoch]
	if rs == nil {
		rs = map[int]bool{}
		s.byEpoch[req.Epoch] = rs
		for len(s.byEpoch) > shapeEpochs {
			delete(s.byEpoch, slices.Min(slices.Collect(maps.Keys(s.byEpoch))))
		}
	}
	rs[req.Rank] = true
}

// shapeOf returns the shape learned for d with the ranks that read epoch
// e, or nil when no stream of e was seen.
func (l *Loader) shapeOf(d *dataset, e int) *jobShape {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.shapes[d.Name]
	if s == nil || s.byEpoch[e] == nil {
		return nil
	}
	c := *s
	c.ranks, c.byEpoch = maps.Clone(s.byEpoch[e]), nil
	return &c
}

// rowsOf returns the selection of the rows the ranks of shape read in the
// epochs es of d (nil: the shape covers every row), as one bitmap per
// epoch.
func (l *Loader) rowsOf(d *dataset, shape *jobShape, es []int) (selection, error) {
	if shape == nil || len(shape.ranks) == shape.world && !shape.dropLast {
		return nil, nil
	}
	rows := map[int][]bool{}
	for _, e := range es {
		in := make([]bool, d.Len())
		for r := range shape.ranks {
			o, err := NewOrder(d.Len(), l.opts.Seed, service.Request{
				Dataset: d.Name, Epoch: e, BatchSize: shape.batch, Rank: r, WorldSize: shape.world,
				DropLast: shape.dropLast, Shuffle: shape.shuffle,
			})
			if err != nil {
				return nil, err
			}
			for k := range o.Batches() {
				for _, i := range o.Batch(k) {
					in[i] = true
				}
			}
		}
		rows[e] = in
	}
	return func(e, i int) bool { return rows[e][i] }, nil
}

// prefetchDone records that the rows shape reads of epoch e of d are in the
// cache (ready, in partial or committed shards).
type prefetchDone struct {
	id    epochID
	shape string
}

// settleRows is fill's second pass for a selection of rows: it waits until
// every row sel selects of eps is ready, computing those that streams
// claimed and gave up. The shards stay partial.
func (l *Loader) settleRows(ctx context.Context, r *runner, eps []*openEpoch, sel selection) error {
	for _, ep := range eps {
		for i := range ep.d.Len() {
			if !sel.has(ep.id.epoch, i) {
				continue
			}
			sh, p := ep.ShardOf(i)
			for {
				s, err := sh.Acquire(p, true, false)
				if err != nil {
					return err
				}
				if s.Ready {
					if s.Release != nil {
						s.Release()
					}
					break
				}
				if s.Claimed {
					if !r.submit(ctx, ep, sh, p) {
						return r.stopped(ctx)
					}
					continue
				}
				select {
				case <-s.Wait:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
		}
	}
	return nil
}
