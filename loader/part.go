package loader

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/tier"
)

// A Part names one of N shares of a distributed precompute: part K of N
// (0 ≤ K < N) takes the shards s with s mod N = K, in every epoch, so
// each image is still decoded once for all the epochs of a run. The N
// parts together are the whole epochs, whatever machines run them and in
// whatever order.
type Part struct{ K, N int }

// String returns "K/N".
func (p Part) String() string { return fmt.Sprintf("%d/%d", p.K, p.N) }

// owns reports whether shard s is the part's.
func (p Part) owns(s int) bool { return s%p.N == p.K }

// A PartSummary is what PrecomputePart did.
type PartSummary struct {
	service.PrecomputeSummary
	Shards   int // (epoch, shard) pairs of the part
	InTier   int // of those, already whole in the tier: skipped
	Uploaded int // uploaded to the tier by this call
}

// partRound is how many of the part's shards one round computes (in every
// epoch) before they are uploaded, at least.
const partRound = 4

// maxUploads bounds the shard uploads running at once.
const maxUploads = 4

// PrecomputePart computes part p of the epochs of a dataset: its shards
// that the tier (Options.Tier) does not hold whole yet, into the cache,
// and uploads each to the tier once committed, while the next shards are
// computed. Without a tier it only fills the cache. It is restartable: a
// shard already in the tier is skipped, one committed in the cache but not
// uploaded (a run killed in between) is uploaded without computing it.
// The shard files are those Precompute writes, byte for byte.
func (l *Loader) PrecomputePart(ctx context.Context, dataset string, epochs []int, p Part, progress func(service.PrecomputeProgress) error) (PartSummary, error) {
	start := time.Now()
	d, err := l.lookup(dataset)
	if err != nil {
		return PartSummary{}, err
	}
	es, err := epochList(epochs)
	if err != nil {
		return PartSummary{}, err
	}
	if p.N < 1 || p.K < 0 || p.K >= p.N {
		return PartSummary{}, &service.FieldError{Field: "part", Reason: fmt.Sprintf("part %s: want K/N with 0 ≤ K < N", p)}
	}
	sum := PartSummary{PrecomputeSummary: service.PrecomputeSummary{Dataset: d.Name, Epochs: es}}
	count := l.shardCount(d)
	var owned []int
	for s := range count {
		if p.owns(s) {
			owned = append(owned, s)
		}
	}
	type pair struct{ e, s int }
	inTier := map[pair]bool{}
	if st := l.opts.Tier; st != nil {
		for _, e := range es {
			have, err := st.Epoch(l.key(d, e)).Complete(ctx)
			if err != nil {
				return sum, fmt.Errorf("loader: list %s: %w", st.URL(), err)
			}
			for _, s := range have {
				inTier[pair{e, s}] = true
			}
		}
	}
	var total int64
	for _, e := range es {
		for _, s := range owned {
			sum.Shards++
			if inTier[pair{e, s}] {
				sum.InTier++
			} else {
				total += int64(min(l.opts.ShardSize, d.Len()-s*l.opts.ShardSize))
			}
		}
	}

	ups, uctx := errgroup.WithContext(ctx)
	ups.SetLimit(maxUploads)
	var uploaded []pair
	var done int64 // rows computed or found cached in earlier rounds
	round := max(partRound, l.opts.Workers)
	for lo := 0; lo < len(owned); lo += round {
		chunk := map[int]bool{}
		for _, s := range owned[lo:min(len(owned), lo+round)] {
			chunk[s] = true
		}
		var todo []pair
		for _, e := range es {
			for s := range chunk {
				if !inTier[pair{e, s}] {
					todo = append(todo, pair{e, s})
				}
			}
		}
		if len(todo) == 0 {
			continue
		}
		sel := func(e, i int) bool {
			s := i / l.opts.ShardSize
			return chunk[s] && !inTier[pair{e, s}]
		}
		var report func(service.PrecomputeProgress) error
		if progress != nil {
			base := done
			report = func(pr service.PrecomputeProgress) error {
				pr.Epochs, pr.Total = es, total
				pr.Done += base
				pr.ImagesPerSec = rate(pr.Done, time.Since(start))
				return progress(pr)
			}
		}
		rs, err := l.precompute(uctx, d, es, sel, workPrecompute, report)
		sum.Computed += rs.Computed
		sum.Cached += rs.Cached
		sum.Resumed += rs.Resumed
		done += rs.Computed + rs.Cached + rs.Resumed
		if err != nil {
			_ = ups.Wait()
			return sum, err
		}
		if l.opts.Tier == nil {
			continue
		}
		for _, pr := range todo {
			ups.Go(func() error { return l.upload(uctx, d, pr.e, pr.s) })
			uploaded = append(uploaded, pr)
		}
	}
	if err := ups.Wait(); err != nil {
		return sum, err
	}
	sum.Uploaded = len(uploaded)
	sum.Seconds = time.Since(start).Seconds()
	sum.ImagesPerSec = rate(sum.Computed, time.Since(start))
	for _, info := range l.cache.Epochs() {
		for _, e := range es {
			if info.Key == l.key(d, e) {
				sum.Bytes += info.Bytes
			}
		}
	}
	return sum, nil
}

// upload puts shard s of epoch e of d, committed in the cache, into the
// tier (once: a shard the tier holds is not sent again).
func (l *Loader) upload(ctx context.Context, d *dataset, e, s int) error {
	k := l.key(d, e)
	m, err := l.cache.Open(k, s)
	if err != nil {
		return fmt.Errorf("loader: upload shard %d of epoch %d: %w", s, e, err)
	}
	defer m.Release()
	lay, err := l.tierLayout(d, e, s)
	if err != nil {
		return err
	}
	if err := l.opts.Tier.Epoch(k).PutShard(ctx, s, m.Data(), lay); err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return fmt.Errorf("loader: upload shard %d of epoch %d to %s: %w", s, e, l.opts.Tier.URL(), err)
	}
	return nil
}

// tierLayout is the layout of shard s of epoch e of d, as the tier names it.
func (l *Loader) tierLayout(d *dataset, e, s int) (tier.Layout, error) {
	schema, err := l.schema(d, e)
	if err != nil {
		return tier.Layout{}, err
	}
	lay, err := arrowio.NewShardLayout(schema, min(l.opts.ShardSize, d.Len()-s*l.opts.ShardSize))
	if err != nil {
		return tier.Layout{}, fmt.Errorf("loader: %w", err)
	}
	return tier.Layout{
		Rows: lay.Rows, RowBytes: lay.RowBytes, Size: lay.Size,
		ImageOffset: lay.ImageOffset, IndexOffset: lay.IndexOffset, LabelOffset: lay.LabelOffset,
	}, nil
}
