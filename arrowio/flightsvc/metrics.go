package flightsvc

import (
	"fmt"

	"github.com/loaderd/loaderd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus collectors. They always exist, so
// the code counts unconditionally; they are registered only when
// Options.Registerer is set, for the Server's life.
type metrics struct {
	streamsActive prometheus.Gauge
	batches       prometheus.Counter
	samples       prometheus.Counter
	bytes         prometheus.Counter
	localBatches  prometheus.Counter
	localSamples  prometheus.Counter
	streamWait    prometheus.Histogram
	requests      *prometheus.CounterVec
}

// newMetrics makes the collectors and registers them with reg, if not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streamsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loaderd_streams_active",
			Help: "DoGet streams (and DoExchange local streams) being served.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_batches_served_total",
			Help: "Record batches sent to Flight clients.",
		}),
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_samples_served_total",
			Help: "Samples (rows) sent to Flight clients.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_bytes_served_total",
			Help: "Arrow IPC bytes (headers and bodies) sent to Flight clients.",
		}),
		localBatches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_local_batches_served_total",
			Help: "Plans (one per training batch) sent to local readers (SPEC §9).",
		}),
		localSamples: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_local_samples_served_total",
			Help: "Samples (rows) named in plans sent to local readers.",
		}),
		streamWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "loaderd_stream_wait_seconds",
			Help:    "Time a stream waited for the Source to produce each batch: how long a trainer waited for data.",
			Buckets: prometheus.ExponentialBuckets(1e-5, 4, 12), // 10µs … ~42s
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loaderd_requests_total",
			Help: "Flight calls by method and gRPC status code.",
		}, []string{"method", "code"}),
	}
	// Registered for the process's life: a Server is served once and has
	// no Close.
	if _, err := promreg.Register(reg, m.collectors()...); err != nil {
		return nil, fmt.Errorf("flightsvc: register metrics: %w", err)
	}
	return m, nil
}

// collectors lists every collector of m.
func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.streamsActive, m.batches, m.samples, m.bytes, m.localBatches, m.localSamples, m.streamWait, m.requests}
}
