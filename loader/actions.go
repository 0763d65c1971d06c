package loader

import (
	"context"
	"fmt"
	"slices"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/gpu"
)

// CacheStatus lists the cached epochs of a dataset, or of every served
// dataset when dataset is "" (arrowio.Actions).
func (l *Loader) CacheStatus(ctx context.Context, dataset string) (arrowio.CacheStatus, error) {
	names := l.names
	if dataset != "" {
		if _, err := l.lookup(dataset); err != nil {
			return arrowio.CacheStatus{}, err
		}
		names = []string{dataset}
	}
	status := l.cacheStatus()
	out := arrowio.CacheStatus{Datasets: []arrowio.DatasetCache{}}
	for _, name := range names {
		eps := status[name]
		if eps == nil {
			eps = []arrowio.EpochStatus{}
		}
		out.Datasets = append(out.Datasets, arrowio.DatasetCache{Dataset: name, Epochs: eps})
	}
	return out, nil
}

// cacheStatus returns, per served dataset, its epochs in the cache under
// this loader's pipeline, shard size and seed, by epoch.
func (l *Loader) cacheStatus() map[string][]arrowio.EpochStatus {
	out := map[string][]arrowio.EpochStatus{}
	infos := l.cache.Epochs()
	for _, name := range l.names {
		d := l.sets[name]
		count := l.shardCount(d)
		for _, info := range infos {
			if info.Key != l.key(d, info.Key.Epoch) {
				continue
			}
			st := arrowio.EpochStatus{Epoch: info.Key.Epoch, State: arrowio.EpochPartial, Bytes: info.Bytes}
			shards := l.cache.Shards(info.Key)
			for _, s := range shards {
				if s >= 0 && s < count {
					st.Samples += int64(min(l.opts.ShardSize, d.Len()-s*l.opts.ShardSize))
				}
			}
			switch {
			case info.Evicting:
				st.State = arrowio.EpochEvicting
			case len(shards) == count:
				st.State = arrowio.EpochComplete
			}
			out[name] = append(out[name], st)
		}
		slices.SortFunc(out[name], func(a, b arrowio.EpochStatus) int { return a.Epoch - b.Epoch })
	}
	return out
}

// Evict frees epochs of a dataset from the cache (arrowio.Actions). An
// epoch a live stream needs shows evicting until its streams end. Evicted
// epochs are not prefetched again until a stream asks for them.
func (l *Loader) Evict(ctx context.Context, dataset string, epochs []int) (arrowio.CacheStatus, error) {
	d, err := l.lookup(dataset)
	if err != nil {
		return arrowio.CacheStatus{}, err
	}
	es, err := epochList(epochs)
	if err != nil {
		return arrowio.CacheStatus{}, err
	}
	for _, e := range es {
		l.mu.Lock()
		l.evicted[epochID{d.Name, e}] = true
		l.mu.Unlock()
		if err := l.cache.Evict(l.key(d, e)); err != nil {
			return arrowio.CacheStatus{}, fmt.Errorf("loader: evict epoch %d of %s: %w", e, d.Name, err)
		}
	}
	return l.CacheStatus(ctx, dataset)
}

// DatasetErrors lists the undecodable samples found so far (arrowio.Actions).
func (l *Loader) DatasetErrors(ctx context.Context, dataset string) ([]arrowio.SampleError, error) {
	d, err := l.lookup(dataset)
	if err != nil {
		return nil, err
	}
	return d.sampleErrors(), nil
}

// TopologyInfo is the result of the topology action: the node's GPUs and
// CPUs (nil when the loader was given none) and the worker placement.
type TopologyInfo struct {
	Topology  *gpu.Topology `json:"topology"`
	Placement gpu.Placement `json:"placement"`
}

// Topology returns the topology in use (arrowio.Actions).
func (l *Loader) Topology(ctx context.Context) (any, error) {
	return TopologyInfo{Topology: l.opts.Topology, Placement: l.placement}, nil
}
