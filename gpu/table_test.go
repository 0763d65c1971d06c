package gpu

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// dgxTopology is a hand-made DGX H100 topology with fixed UUIDs.
func dgxTopology() *Topology {
	node0, node1 := append(seq(0, 55), seq(112, 167)...), append(seq(56, 111), seq(168, 223)...)
	t := &Topology{
		Source: SourceNVML, Driver: "550.54.15", CPUs: seq(0, 223),
		Nodes: []NUMANode{{ID: 0, CPUs: node0, MemoryBytes: 1 << 40}, {ID: 1, CPUs: node1, MemoryBytes: 1 << 40}},
	}
	buses := []string{"18", "2a", "3a", "5d", "9a", "ab", "ba", "db"}
	for i, bus := range buses {
		d := Device{Index: i, UUID: "GPU-0000000" + string(rune('0'+i)) + "-c0de-4ab1-8e2d-5f1d2a3b4c5d",
			Name: "NVIDIA H100 80GB HBM3", PCIBusID: "0000:" + bus + ":00.0", MemoryBytes: 80 << 30, NUMANode: i / 4, CPUs: node0}
		if i >= 4 {
			d.CPUs = node1
		}
		t.Devices = append(t.Devices, d)
	}
	t.Devices[5].CPUs, t.Devices[5].NUMANode = seq(0, 223), 1
	t.Devices[5].Warning = "gpu: nvml GetCpuAffinityWithinScope: ERROR_NOT_SUPPORTED; gpu: nvml GetCpuAffinity: ERROR_UNKNOWN; using all CPUs"
	for a := range 8 {
		for b := a + 1; b < 8; b++ {
			t.Links = append(t.Links, Link{A: a, B: b, Level: "NVLINK x18"})
		}
	}
	return t
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s; got:\n%s\nwant:\n%s", name, path, got, want)
	}
}

func TestWriteTable(t *testing.T) {
	sysfs, err := CPUOnly(fakeSys(t, "sysfs-2node"))
	if err != nil {
		t.Fatal(err)
	}
	sysfs.Warning = "gpu: NVML not available: nvml Init: ERROR_LIBRARY_NOT_FOUND; CPU and NUMA layout read from sysfs"
	noGPU, err := CPUOnly(fakeSys(t, "sysfs-nogpu"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		topo    *Topology
		workers int
	}{
		{name: "table-dgx", topo: dgxTopology(), workers: 32},
		{name: "table-sysfs", topo: sysfs, workers: 4},
		{name: "table-nogpu", topo: noGPU, workers: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteTable(&buf, tc.topo, Place(tc.topo, tc.workers)); err != nil {
				t.Fatalf("WriteTable: %v", err)
			}
			golden(t, tc.name, buf.Bytes())
		})
	}
}

func TestJSON(t *testing.T) {
	topo, err := CPUOnly(fakeSys(t, "sysfs-vm"))
	if err != nil {
		t.Fatal(err)
	}
	topo.Warning = "gpu: NVML not available: built without cgo; CPU and NUMA layout read from sysfs"
	b, err := json.MarshalIndent(struct {
		Topology
		Placement
	}{*topo, Place(topo, 3)}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "topology-vm.json", append(b, '\n'))

	var back Topology
	if err := json.Unmarshal(b, &back); err != nil || back.Devices[0].PCIBusID != "0000:00:05.0" {
		t.Errorf("JSON does not read back: %+v, %v", back, err)
	}
}

func TestWriteTableNil(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, nil, Placement{}); err != nil || buf.Len() == 0 {
		t.Errorf("WriteTable(nil) = %q, %v", buf.String(), err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestWriteTableError(t *testing.T) {
	topo := dgxTopology()
	if err := WriteTable(failWriter{}, topo, Place(topo, 4)); err == nil {
		t.Error("WriteTable to a failing writer returned nil")
	}
}

// TestWriteTableFallback: the sysfs fallback is a warning when sysfs shows
// GPUs NVML cannot see, and a plain "GPUs: none" on a machine without one.
func TestWriteTableFallback(t *testing.T) {
	const why = "gpu: NVML not available: nvml Init: ERROR_LIBRARY_NOT_FOUND; CPU and NUMA layout read from sysfs"
	tests := []struct {
		name    string
		devices []Device
		want    string
		notWant string
	}{
		{name: "no GPU", want: "GPUs:    none (gpu: NVML not available: nvml Init: ERROR_LIBRARY_NOT_FOUND)\n", notWant: "Warning"},
		{name: "GPUs NVML cannot see", devices: []Device{{Index: 0, PCIBusID: "0000:3b:00.0"}}, want: "Warning:  " + why},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			topo := &Topology{Source: SourceSysfs, CPUs: seq(0, 1), Devices: tc.devices, Warning: why}
			if err := WriteTable(&b, topo, Place(topo, 2)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(b.Bytes(), []byte(tc.want)) || (tc.notWant != "" && bytes.Contains(b.Bytes(), []byte(tc.notWant))) {
				t.Errorf("table:\n%s\nwant %q, not %q", b.String(), tc.want, tc.notWant)
			}
		})
	}
}
