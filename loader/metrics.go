package loader

import (
	"fmt"

	"github.com/loaderd/loaderd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the loader's Prometheus collectors. They always exist, so the
// code counts unconditionally; they are registered only when
// Options.Registerer is set, until Close.
type metrics struct {
	set         promreg.Set // the registered collectors
	decoded     prometheus.Counter
	undecodable prometheus.Counter
	computed    *prometheus.CounterVec
	served      prometheus.Counter
	hits        prometheus.Counter // rows a stream found cached, computed or in production
	misses      prometheus.Counter // rows a stream had to compute: cold

	datasetChanges prometheus.Counter // listings swapped in (served.go)
	readErrors     prometheus.Counter // sample files unreadable after retries (read.go)
	fetched        prometheus.Counter // rows read from the shared tier
	resumed        prometheus.Counter // rows of partial shards found again on disk
	uploadedRows   prometheus.Counter // rows uploaded to the tier as parts
}

// newMetrics makes the collectors and registers them with reg, if not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decoded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_images_decoded_total",
			Help: "Image files decoded (one decode may feed several epochs).",
		}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_undecodable_samples_total",
			Help: "Samples found undecodable (each counted once per process).",
		}),
		computed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loaderd_rows_computed_total",
			Help: "Augmented rows computed, by what asked for them.",
		}, []string{"kind"}),
		datasetChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_dataset_changes_total",
			Help: "New listings of a served dataset whose files changed (added, removed or rewritten) while serving.",
		}),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_read_errors_total",
			Help: "Sample files that could not be read after retries (the request that needed one failed with Unavailable).",
		}),
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_rows_served_from_cache_total",
			Help: "Rows streamed from committed cache shards.",
		}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_cache_hits_total",
			Help: "Rows a stream asked for that were cached, or computed or being computed by other work (prefetch, precompute, another stream).",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_cache_misses_total",
			Help: "Rows a stream asked for that nothing had computed (cold): computed for the stream, or streamed uncached.",
		}),
	}
	m.fetched, m.resumed, m.uploadedRows = sharedCollectors()
	for _, w := range works {
		m.computed.WithLabelValues(w.String())
	}
	set, err := promreg.Register(reg, m.collectors()...)
	if err != nil {
		return nil, fmt.Errorf("loader: register metrics: %w", err)
	}
	m.set = set
	return m, nil
}

// collectors lists every collector of m.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.decoded, m.undecodable, m.computed, m.served, m.hits, m.misses, m.datasetChanges, m.readErrors, m.fetched, m.resumed, m.uploadedRows}
}
