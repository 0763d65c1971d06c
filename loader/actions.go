package loader

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/loaderd/loaderd/service"
)

// CacheStatus lists the cached epochs of a dataset, or of every served
// dataset when dataset is "" (service.Actions).
func (l *Loader) CacheStatus(ctx context.Context, dataset string) (service.CacheStatus, error) {
	names := l.names
	if dataset != "" {
		if _, err := l.lookup(dataset); err != nil {
			return service.CacheStatus{}, err
		}
		names = []string{dataset}
	}
	status := l.cacheStatus()
	infos, notes := l.cache.Epochs(), readPipelines(l.cache.Dir())
	out := service.CacheStatus{Datasets: []service.DatasetCache{}}
	for _, name := range names {
		eps := status[name]
		if eps == nil {
			eps = []service.EpochStatus{}
		}
		other := l.otherEpochs(l.sets[name].current(), infos, notes)
		if len(other) == 0 {
			other = nil
		}
		out.Datasets = append(out.Datasets, service.DatasetCache{Dataset: name, Epochs: eps, Other: other})
	}
	return out, nil
}

// cacheStatus returns, per served dataset, its epochs in the cache under
// this loader's pipeline, shard size and seed, by epoch.
func (l *Loader) cacheStatus() map[string][]service.EpochStatus {
	out := map[string][]service.EpochStatus{}
	infos := l.cache.Epochs()
	for _, name := range l.names {
		d := l.sets[name].current()
		count := l.shardCount(d)
		for _, info := range infos {
			if info.Key != l.key(d, info.Key.Epoch) {
				continue
			}
			st := service.EpochStatus{Epoch: info.Key.Epoch, State: service.EpochPartial, Bytes: info.Bytes}
			shards := l.cache.Shards(info.Key)
			for _, s := range shards {
				if s >= 0 && s < count {
					st.Samples += int64(min(l.opts.ShardSize, d.Len()-s*l.opts.ShardSize))
				}
			}
			switch {
			case info.Evicting:
				st.State = service.EpochEvicting
			case len(shards) == count:
				st.State = service.EpochComplete
			}
			out[name] = append(out[name], st)
		}
		slices.SortFunc(out[name], func(a, b service.EpochStatus) int { return a.Epoch - b.Epoch })
	}
	return out
}

// Evict frees epochs of a dataset from the cache (service.Actions). An
// epoch a live stream needs shows evicting until its streams end. Evicted
// epochs are not prefetched again until a stream asks for them.
func (l *Loader) Evict(ctx context.Context, dataset string, epochs []int) (service.CacheStatus, error) {
	d, err := l.lookup(dataset)
	if err != nil {
		return service.CacheStatus{}, err
	}
	es, err := epochList(epochs)
	if err != nil {
		return service.CacheStatus{}, err
	}
	for _, e := range es {
		l.mu.Lock()
		l.evicted[idOf(d, e)] = true
		for k := range l.prefetched {
			if k.id == idOf(d, e) {
				delete(l.prefetched, k)
			}
		}
		l.mu.Unlock()
		if err := l.cache.Evict(l.key(d, e)); err != nil {
			return service.CacheStatus{}, fmt.Errorf("loader: evict epoch %d of %s: %w", e, d.Name, err)
		}
	}
	return l.CacheStatus(ctx, dataset)
}

// DatasetErrors lists the undecodable samples found so far (service.Actions).
func (l *Loader) DatasetErrors(ctx context.Context, dataset string) ([]service.SampleError, error) {
	d, err := l.lookup(dataset)
	if err != nil {
		return nil, err
	}
	return d.sampleErrors(), nil
}

// Topology returns the topology in use (service.Actions): the node's GPUs
// and CPUs (null when the loader was given none) and the worker placement.
func (l *Loader) Topology(ctx context.Context) (service.Topology, error) {
	topo, err := json.Marshal(l.opts.Topology)
	if err != nil {
		return service.Topology{}, fmt.Errorf("loader: topology: %w", err)
	}
	pl, err := json.Marshal(l.placement)
	if err != nil {
		return service.Topology{}, fmt.Errorf("loader: placement: %w", err)
	}
	return service.Topology{Topology: topo, Placement: pl}, nil
}
