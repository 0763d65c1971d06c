package promreg

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func counter(name string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: name})
}

// TestAllOrNone: a set whose last collector's name is taken registers
// none; once the holder unregisters, the same names register again.
func TestAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := Register(reg, counter("b"))
	if err != nil {
		t.Fatal(err)
	}
	var taken prometheus.AlreadyRegisteredError
	if _, err := Register(reg, counter("a"), counter("b")); !errors.As(err, &taken) {
		t.Fatalf("second set: %v; want AlreadyRegisteredError", err)
	}
	if mfs, _ := reg.Gather(); len(mfs) != 1 || mfs[0].GetName() != "b" {
		t.Fatalf("after the failed set the registry holds %d families; want b alone", len(mfs))
	}
	first.Unregister()
	first.Unregister() // a second call does nothing
	s, err := Register(reg, counter("a"), counter("b"))
	if err != nil {
		t.Fatalf("names freed by Unregister: %v", err)
	}
	s.Unregister()
	if mfs, _ := reg.Gather(); len(mfs) != 0 {
		t.Fatalf("%d families left after Unregister", len(mfs))
	}
	if s, err := Register(nil, counter("a")); err != nil || s.reg != nil {
		t.Fatalf("nil registry: %+v, %v; want nothing registered, no error", s, err)
	}
}
