package tier

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the tier's Prometheus collectors. Their labels are fixed
// words: no URL, endpoint or credential ever becomes a label.
type metrics struct {
	reg        prometheus.Registerer // nil: not registered
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
	if reg == nil {
		return m, nil
	}
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return nil, fmt.Errorf("tier: register metrics: %w", err)
		}
		done = append(done, c)
	}
	m.reg = reg
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.downloaded, m.uploaded, m.corrupt}
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
	m.reg = nil
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
