package loader

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
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
	status := l.cacheStatus(true)
	infos, pipes, listings := l.cache.Epochs(), readPipelines(l.cache.Dir()), readListings(l.cache.Dir())
	out := service.CacheStatus{Datasets: []service.DatasetCache{}}
	for _, name := range names {
		eps := status[name]
		if eps == nil {
			eps = []service.EpochStatus{}
		}
		other := l.otherEpochs(l.sets[name], infos, pipes, listings)
		if len(other) == 0 {
			other = nil
		}
		out.Datasets = append(out.Datasets, service.DatasetCache{Dataset: name, Epochs: eps, Other: other})
	}
	return out, nil
}

// cacheStatus returns, per served dataset, its epochs in the cache under
// this loader's pipeline, shard size and seed, by epoch. With partial set,
// an epoch's samples count the rows of its partial shards too (partialRows:
// a file read per partial shard); else committed shards only.
func (l *Loader) cacheStatus(partial bool) map[string][]service.EpochStatus {
	out := map[string][]service.EpochStatus{}
	infos := l.cache.Epochs()
	for _, name := range l.names {
		d := l.sets[name].current()
		count := l.shardCount(d)
		for _, info := range infos {
			if info.Key != l.key(d, info.Key.Epoch) {
				continue
			}
			st := service.EpochStatus{Epoch: info.Key.Epoch, State: service.EpochPartial, Bytes: info.Bytes + info.Writing}
			shards := l.cache.Shards(info.Key)
			committed := make(map[int]bool, len(shards))
			for _, s := range shards {
				if s >= 0 && s < count {
					committed[s] = true
					st.Samples += int64(min(l.opts.ShardSize, d.Len()-s*l.opts.ShardSize))
				}
			}
			if partial {
				for s, n := range l.partialRows(d, info.Key.Epoch) {
					if !committed[s] && s >= 0 && s < count {
						st.Samples += int64(n)
					}
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

// partialRows returns the rows written in each partial shard of epoch e of
// d, by shard: those ready in a writer of this process, else those its
// journal names (a suspended shard, or a checkpoint of one written here).
func (l *Loader) partialRows(d *dataset, e int) map[int]int {
	out := map[int]int{}
	for s, j := range l.cache.Journals(l.key(d, e)) {
		if rows, err := epoch.DecodeJournal(j); err == nil {
			out[s] = len(rows)
		}
	}
	l.mu.Lock() // never held with a Shard.mu: gather the epochs, then ask their shards
	var open []*openEpoch
	for _, m := range []map[epochID]*openEpoch{l.epochs, l.closing} {
		if ep := m[idOf(d, e)]; ep != nil {
			open = append(open, ep)
		}
	}
	l.mu.Unlock()
	for _, ep := range open {
		for s, sh := range ep.Shards() {
			if n, writing := sh.Written(); writing {
				out[s] = n
			}
		}
	}
	return out
}

// Evict frees epochs of a dataset from the cache (service.Actions) and
// returns the cache status after, its Evicted saying what became of each
// epoch: evicted, not cached, or in use (an epoch a live stream needs shows
// evicting until its streams end). Evicted epochs are not prefetched again
// until a stream asks for them.
func (l *Loader) Evict(ctx context.Context, dataset string, epochs []int) (service.CacheStatus, error) {
	d, err := l.lookup(dataset)
	if err != nil {
		return service.CacheStatus{}, err
	}
	es, err := epochList(epochs)
	if err != nil {
		return service.CacheStatus{}, err
	}
	var evicted []service.EpochEviction
	for _, e := range es {
		l.mu.Lock()
		l.evicted[idOf(d, e)] = true
		for k := range l.prefetched {
			if k.id == idOf(d, e) {
				delete(l.prefetched, k)
			}
		}
		l.mu.Unlock()
		what, err := l.cache.Evict(l.key(d, e))
		if err != nil {
			return service.CacheStatus{}, fmt.Errorf("loader: evict epoch %d of %s: %w", e, d.Name, err)
		}
		evicted = append(evicted, service.EpochEviction{Dataset: d.Name, Epoch: e, Result: evictionResult(what)})
	}
	st, err := l.CacheStatus(ctx, dataset)
	st.Evicted = evicted
	return st, err
}

// evictionResult words what shardcache's Evict did as EpochEviction.Result.
func evictionResult(what shardcache.Eviction) string {
	switch what {
	case shardcache.Evicted:
		return service.EvictFreed
	case shardcache.Deferred:
		return service.EvictInUse
	}
	return service.EvictNotCached
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
