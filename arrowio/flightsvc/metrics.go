package flightsvc

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus collectors. They exist (and are
// updated) whether or not a Registerer was given.
type metrics struct {
	streamsActive prometheus.Gauge
	batches       prometheus.Counter
	samples       prometheus.Counter
	bytes         prometheus.Counter
	streamWait    prometheus.Histogram
	requests      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streamsActive: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loaderd_streams_active",
			Help: "DoGet streams being served.",
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
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.streamsActive, m.batches, m.samples, m.bytes, m.streamWait, m.requests} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
