// Package promreg registers a component's Prometheus collectors as one
// set: all of them or none, and unregistered together when the component
// closes, so that a later one in the same process (a reopened Cache, a new
// Loader or Server in a test) may register its own under the same names.
package promreg

import "github.com/prometheus/client_golang/prometheus"

// Set is the collectors a component registered. The zero Set holds none;
// Unregister on it does nothing.
type Set struct {
	reg prometheus.Registerer
	cs  []prometheus.Collector
}

// Register registers every collector of cs with reg (nil: none, and no
// error). On a failure it leaves none of them registered and returns the
// registry's error (prometheus.AlreadyRegisteredError for a name taken).
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) (Set, error) {
	if reg == nil {
		return Set{}, nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, d := range cs[:i] {
				reg.Unregister(d)
			}
			return Set{}, err
		}
	}
	return Set{reg: reg, cs: cs}, nil
}

// Unregister removes the set's collectors from their registry; later calls
// do nothing.
func (s *Set) Unregister() {
	if s.reg == nil {
		return
	}
	for _, c := range s.cs {
		s.reg.Unregister(c)
	}
	*s = Set{}
}
