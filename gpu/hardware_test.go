//go:build gpu && cgo

package gpu

import (
	"bytes"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// TestHardware runs against the machine's real NVML: go test -tags gpu.
func TestHardware(t *testing.T) {
	topo, err := Discover(nvml.New(), nil)
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if topo.Source != SourceNVML || topo.Driver == "" || len(topo.Devices) == 0 {
		t.Fatalf("Discover = %+v, want NVML devices and a driver version", topo)
	}
	for i, d := range topo.Devices {
		if !strings.HasPrefix(d.UUID, "GPU-") || d.PCIBusID == "" || d.MemoryBytes == 0 || len(d.CPUs) == 0 {
			t.Errorf("device %d = %+v, want UUID, bus id, memory and CPUs", i, d)
		}
		for _, id := range []string{d.UUID, d.PCIBusID} {
			if got, err := topo.FindGPU(id); err != nil || got != i {
				t.Errorf("FindGPU(%q) = %d, %v; want %d", id, got, err, i)
			}
		}
	}
	loaded, err := Load(&Options{RequireGPU: true})
	if err != nil || len(loaded.Devices) != len(topo.Devices) {
		t.Fatalf("Load(RequireGPU) = %+v, %v", loaded, err)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, loaded, Place(loaded, 8)); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", buf.String())
}
