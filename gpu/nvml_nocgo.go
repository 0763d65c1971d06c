//go:build !cgo

package gpu

import "fmt"

// loadNVML cannot reach NVML: go-nvml needs cgo.
func loadNVML(*Options) (*Topology, error) {
	return nil, fmt.Errorf("%w: built without cgo", ErrNoNVML)
}
