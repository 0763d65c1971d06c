package loader

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/shardcache"
	"github.com/loaderd/loaderd/tier"
)

// The loader and the shared tier (Options.Tier):
//
//   - a row a stream, a prefetch or a precompute claims is read from the
//     tier when the tier holds it (a complete shard's, or a part's), by
//     byte range, checked on arrival, instead of being computed;
//   - a shard committed to the cache is uploaded whole, once;
//   - a shard kept partial (its epoch's users left before every row was
//     in: a node that serves only some ranks never completes a shard) has
//     the rows its journal names uploaded as a part, which another node, or
//     a later job on other nodes, reads instead of computing them.
//
// Uploads run in the background, at most maxUploads at once, owned by the
// loader: Close cancels and waits for them.

// uploads runs the loader's uploads to the tier.
type uploads struct {
	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	slots  chan struct{} // at most maxUploads at once

	mu      sync.Mutex         // guards pending; a leaf
	pending map[uploadKey]bool // queued or running
}

// uploadKey names one upload: a shard of an epoch, whole or partial.
type uploadKey struct {
	key     shardcache.Key
	shard   int
	partial bool
}

func newUploads() *uploads {
	ctx, cancel := context.WithCancel(context.Background())
	return &uploads{ctx: ctx, cancel: cancel, slots: make(chan struct{}, maxUploads), pending: map[uploadKey]bool{}}
}

// uploadGrace is how long Close lets the uploads queued run before it
// cancels them: the parts a node computed are worth finishing.
const uploadGrace = 30 * time.Second

// stop waits up to grace for the uploads queued, then cancels the rest
// and waits for them. No upload is queued after.
func (u *uploads) stop(grace time.Duration) {
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
	}
	u.cancel()
	<-done
}

// queue runs f for k in the background. If k is queued or running
// already, it runs once more after that run: a partial shard kept again
// has more rows to upload.
func (u *uploads) queue(k uploadKey, f func(ctx context.Context) error, log func(error)) {
	u.mu.Lock()
	if u.ctx.Err() != nil {
		u.mu.Unlock()
		return
	}
	if _, busy := u.pending[k]; busy {
		u.pending[k] = true // run again
		u.mu.Unlock()
		return
	}
	u.pending[k] = false
	u.mu.Unlock()
	u.wg.Go(func() {
		for {
			select {
			case u.slots <- struct{}{}:
			case <-u.ctx.Done():
				u.mu.Lock()
				delete(u.pending, k)
				u.mu.Unlock()
				return
			}
			if err := f(u.ctx); err != nil && u.ctx.Err() == nil {
				log(err)
			}
			<-u.slots
			u.mu.Lock()
			again := u.pending[k]
			if !again || u.ctx.Err() != nil {
				delete(u.pending, k)
				u.mu.Unlock()
				return
			}
			u.pending[k] = false
			u.mu.Unlock()
		}
	})
}

// hooks returns what the shards of epoch e of d tell the loader.
func (l *Loader) hooks(d *dataset, e int) *epoch.Hooks {
	h := &epoch.Hooks{Resumed: func(n int) { l.met.resumed.Add(float64(n)) }}
	if l.opts.Tier == nil {
		return h
	}
	k := l.key(d, e)
	logf := func(what string, s int) func(error) {
		return func(err error) {
			l.log.Warn("loader: upload to the shared tier", "what", what, "dataset", d.Name, "epoch", e, "shard", s, "err", err)
		}
	}
	h.Committed = func(s int) {
		l.up.queue(uploadKey{k, s, false}, func(ctx context.Context) error { return l.upload(ctx, d, e, s) }, logf("shard", s))
	}
	h.Suspended = func(s int) {
		l.up.queue(uploadKey{k, s, true}, func(ctx context.Context) error { return l.uploadPart(ctx, d, e, s) }, logf("part", s))
	}
	return h
}

// uploadPart puts the rows of the partial shard s of epoch e of d that its
// journal names into the tier as a part. Rows the tier holds already (from
// a part of ours or another node's) are not sent again.
func (l *Loader) uploadPart(ctx context.Context, d *dataset, e, s int) error {
	k := l.key(d, e)
	m, journal, err := l.cache.OpenPartial(k, s)
	if errors.Is(err, shardcache.ErrMiss) {
		return nil // committed or evicted since
	} else if err != nil {
		return err
	}
	defer m.Release()
	rows, err := epoch.DecodeJournal(journal)
	if err != nil {
		return fmt.Errorf("loader: partial shard %d of epoch %d: %w", s, e, err)
	}
	lay, err := l.tierLayout(d, e, s)
	if err != nil {
		return err
	}
	if int64(len(m.Data())) != lay.Size {
		return fmt.Errorf("loader: partial shard %d of epoch %d: %d bytes, want %d", s, e, len(m.Data()), lay.Size)
	}
	tep := l.opts.Tier.Epoch(k)
	complete, have, err := tep.Available(ctx, s)
	if err != nil {
		return err
	}
	if complete {
		return nil
	}
	var out []tier.Row
	for _, r := range rows {
		if _, dup := slices.BinarySearch(have, r.Row); dup {
			continue
		}
		off := lay.ImageOffset + int64(r.Row)*int64(lay.RowBytes)
		out = append(out, tier.Row{Row: r.Row, Index: r.Index, Label: r.Label, Image: m.Data()[off : off+int64(lay.RowBytes)]})
	}
	if len(out) == 0 {
		return nil
	}
	if err := tep.PutRows(ctx, s, out, lay); err != nil {
		return err
	}
	l.met.uploadedRows.Add(float64(len(out)))
	return nil
}

// maxFetches and maxBgFetches bound the rows read from the tier at once,
// per loader, for streams and for background work.
const (
	maxFetches   = 32
	maxBgFetches = 8
)

// inTier reports whether the tier may hold row p of shard sh of ep: it
// holds something of the shard, by its listing (listed again at most every
// tier.Options.ListInterval). It reads no index and no row, so the stream's
// producer never waits for more than a listing: the fetcher reads the
// indexes, and hands the row to a worker when the tier lacks it.
func (l *Loader) inTier(ctx context.Context, ep *openEpoch, sh *epoch.Shard, p int) bool {
	if l.opts.Tier == nil {
		return false
	}
	ok, err := l.opts.Tier.Epoch(ep.Key()).Holds(ctx, sh.Lo()/l.opts.ShardSize)
	return err == nil && ok
}

// errTierListing wraps a failure to learn what the tier holds of a shard
// (fromTier): the tier is unreachable, or slow, for the moment.
var errTierListing = errors.New("shared tier unavailable")

// fromTier reads row p of shard sh of ep into dst when the tier holds it,
// and returns the sample index and label the row carries. It reports
// false, with a nil error, when there is no tier or the tier lacks the
// row, and false with the error when asking the tier failed (wrapping
// errTierListing when its listing or index did): the caller computes the
// row then, or gives it up when its requester left, and says which.
func (l *Loader) fromTier(ctx context.Context, ep *openEpoch, sh *epoch.Shard, p int, dst []byte) (uint64, int64, bool, error) {
	if l.opts.Tier == nil {
		return 0, 0, false, nil
	}
	s := sh.Lo() / l.opts.ShardSize
	tep := l.opts.Tier.Epoch(ep.Key())
	complete, have, err := tep.Available(ctx, s)
	if err != nil {
		return 0, 0, false, fmt.Errorf("%w: %w", errTierListing, err)
	}
	if _, ok := slices.BinarySearch(have, p); !complete && !ok {
		return 0, 0, false, nil
	}
	rows, err := tep.ReadRows(ctx, s, []int{p})
	if err != nil {
		return 0, 0, false, err
	}
	if len(rows) != 1 || len(rows[0].Image) != len(dst) {
		return 0, 0, false, nil
	}
	copy(dst, rows[0].Image)
	l.met.fetched.Inc()
	return rows[0].Index, rows[0].Label, true, nil
}

// sharedMetrics are the loader's counters of the shared tier and of
// partial shards.
func sharedCollectors() (fetched, resumed, uploadedRows prometheus.Counter) {
	return prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_rows_fetched_total",
			Help: "Rows read from the shared tier (--remote-cache) instead of being computed.",
		}), prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_rows_resumed_total",
			Help: "Rows of partial shards found on disk again (after their epoch's users left, or a restart) and checked.",
		}), prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_tier_rows_uploaded_total",
			Help: "Rows of partial shards uploaded to the shared tier as parts.",
		})
}
