package tier

import (
	"errors"
	"fmt"

	"github.com/loaderd/loaderd/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the tier's Prometheus collectors. Their labels are fixed
// words: no URL, endpoint or credential ever becomes a label.
type metrics struct {
	set        promreg.Set // the registered collectors
	requests   *prometheus.CounterVec
	downloaded prometheus.Counter
	uploaded   prometheus.Counter
	corrupt    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loaderd_tier_requests_total", Help: "Requests to the shared tier by operation (get, put, list) and outcome (ok, missing, error).",
		}, []string{"op", "outcome"}),
		downloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_tier_downloaded_bytes_total", Help: "Bytes read from the shared tier.",
		}),
		uploaded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_tier_uploaded_bytes_total", Help: "Bytes written to the shared tier.",
		}),
		corrupt: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loaderd_tier_corrupt_total", Help: "Objects or rows from the shared tier that failed their checksum and were not used.",
		}),
	}
	for _, op := range []string{"get", "put", "list"} {
		for _, out := range []string{"ok", "missing", "error"} {
			m.requests.WithLabelValues(op, out)
		}
	}
	set, err := promreg.Register(reg, m.collectors()...)
	if err != nil {
		return nil, fmt.Errorf("tier: register metrics: %w", err)
	}
	m.set = set
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.downloaded, m.uploaded, m.corrupt}
}

// request counts one request of op with its outcome.
func (m *metrics) request(op string, err error) {
	out := "ok"
	switch {
	case errors.Is(err, ErrMissing):
		out = "missing"
	case err != nil:
		out = "error"
	}
	m.requests.WithLabelValues(op, out).Inc()
}
