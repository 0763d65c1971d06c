package shardcache

import (
	"fmt"

	"github.com/loaderd/loaderd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's Prometheus collectors. They always exist, so the
// code counts unconditionally; they are registered only when
// Options.Registerer is set, until Close.
type metrics struct {
	set           promreg.Set // the registered collectors
	hits          prometheus.Counter
	misses        prometheus.Counter
	corrupt       prometheus.Counter
	checksums     prometheus.Counter
	evictions     prometheus.Counter
	shardsWritten prometheus.Counter
	leases        prometheus.Gauge
	bytes         prometheus.GaugeFunc
}

// newMetrics makes the collectors and registers them with reg, if not nil.
// usage backs the loaderd_cache_bytes gauge.
func newMetrics(reg prometheus.Registerer, usage func() float64) (*metrics, error) {
	m := &metrics{
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_cache_shard_hits_total", Help: "Shard opens that found a committed shard (the loader's loaderd_cache_hits_total counts rows).",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_cache_shard_misses_total", Help: "Shard opens that found no committed shard (the loader's loaderd_cache_misses_total counts rows).",
		}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_cache_corrupt_total", Help: "Shards that failed their checksum or size check and were deleted.",
		}),
		checksums: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_cache_checksums_total", Help: "Shards read and checksummed before their first use (once per file per boot).",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_cache_evictions_total", Help: "Epochs removed from the cache.",
		}),
		shardsWritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_cache_shards_written_total", Help: "Shards committed to the cache.",
		}),
		leases: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loaderd_cache_leases", Help: "Leases held for readers in other processes (local transport streams).",
		}),
		bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "loaderd_cache_bytes", Help: "Bytes of committed shards plus space reserved by shards being written.",
		}, usage),
	}
	set, err := promreg.Register(reg, m.collectors()...)
	if err != nil {
		return nil, fmt.Errorf("shardcache: register metrics: %w", err)
	}
	m.set = set
	return m, nil
}

// collectors lists every collector of m.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.hits, m.misses, m.corrupt, m.checksums, m.evictions, m.shardsWritten, m.leases, m.bytes}
}
