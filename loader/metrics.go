package loader

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the loader's Prometheus collectors; they exist (unregistered)
// when Options.Registerer is nil, so the code never checks.
type metrics struct {
	decoded     prometheus.Counter
	undecodable prometheus.Counter
	computed    *prometheus.CounterVec
	served      prometheus.Counter
}

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
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_rows_served_from_cache_total",
			Help: "Rows streamed from committed cache shards.",
		}),
	}
	for _, w := range works {
		m.computed.WithLabelValues(w.String())
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.decoded, m.undecodable, m.computed, m.served} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("loader: register metrics: %w", err)
			}
		}
	}
	return m, nil
}
