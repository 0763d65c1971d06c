package gpu

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// fakeSys unpacks testdata/name.txtar (a txtar archive: "-- path --" lines
// start files) into a temporary directory and returns it as a SysRoot.
func fakeSys(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".txtar"))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	var path string
	var body strings.Builder
	flush := func() {
		if path == "" {
			return
		}
		p := filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for line := range strings.Lines(string(b)) {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "-- "); ok && strings.HasSuffix(name, " --") {
			flush()
			path, body = strings.TrimSuffix(name, " --"), strings.Builder{}
			continue
		}
		body.WriteString(line)
	}
	flush()
	return root
}

func seq(lo, hi int) []int {
	var s []int
	for c := lo; c <= hi; c++ {
		s = append(s, c)
	}
	return s
}

func TestCPUOnly(t *testing.T) {
	tests := []struct {
		name    string
		tree    string
		want    *Topology
		wantErr error
	}{
		{
			name: "two nodes, a memory-only node, two GPUs",
			tree: "sysfs-2node",
			want: &Topology{
				Source: SourceSysfs,
				Links:  []Link{},
				CPUs:   seq(0, 15),
				Nodes: []NUMANode{
					{ID: 0, CPUs: seq(0, 7), MemoryBytes: 16 << 30},
					{ID: 1, CPUs: seq(8, 15), MemoryBytes: 16 << 30},
					{ID: 2, MemoryBytes: 1 << 30},
				},
				Devices: []Device{
					{Index: 0, Name: "NVIDIA PCI device 0x2330", PCIBusID: "0000:18:00.0", NUMANode: 0, CPUs: seq(0, 7)},
					{Index: 1, Name: "NVIDIA PCI device 0x2330", PCIBusID: "0000:86:00.0", NUMANode: 1, CPUs: seq(8, 15)},
				},
			},
		},
		{
			name: "VM with a GPU whose numa_node is -1",
			tree: "sysfs-vm",
			want: &Topology{
				Source: SourceSysfs,
				Links:  []Link{},
				CPUs:   seq(0, 3),
				Nodes:  []NUMANode{{ID: 0, CPUs: seq(0, 3), MemoryBytes: 7563476 * 1024}},
				Devices: []Device{
					{Index: 0, Name: "NVIDIA PCI device 0x20b0", PCIBusID: "0000:00:05.0", NUMANode: 0, CPUs: seq(0, 3)},
				},
			},
		},
		{
			name: "no GPU",
			tree: "sysfs-nogpu",
			want: &Topology{
				Source:  SourceSysfs,
				Devices: []Device{},
				Links:   []Link{},
				CPUs:    seq(0, 1),
				Nodes:   []NUMANode{{ID: 0, CPUs: seq(0, 1), MemoryBytes: 7563476 * 1024}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CPUOnly(fakeSys(t, tc.tree))
			if err != nil {
				t.Fatalf("CPUOnly: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("CPUOnly =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestCPUOnlyWithoutSys(t *testing.T) {
	got, err := CPUOnly(t.TempDir())
	if err != nil {
		t.Fatalf("CPUOnly: %v", err)
	}
	if want := seq(0, runtime.NumCPU()-1); !reflect.DeepEqual(got.CPUs, want) {
		t.Errorf("CPUs = %v, want %v", got.CPUs, want)
	}
	if got.Source != SourceSysfs || len(got.Nodes) != 0 || len(got.Devices) != 0 {
		t.Errorf("CPUOnly = %+v, want sysfs source, no nodes, no devices", got)
	}
}

func TestCPUOnlyBadTree(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		value string
	}{
		{name: "online CPUs", file: "sys/devices/system/cpu/online", value: "0-x"},
		{name: "node CPUs", file: "sys/devices/system/node/node1/cpulist", value: "9-3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeSys(t, "sysfs-2node")
			if err := os.WriteFile(filepath.Join(root, tc.file), []byte(tc.value), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := CPUOnly(root)
			if !errors.Is(err, ErrBadCPUSet) {
				t.Errorf("CPUOnly = %v, want ErrBadCPUSet", err)
			}
		})
	}
}

func TestRealSysfs(t *testing.T) {
	got, err := CPUOnly("")
	if err != nil {
		t.Fatalf("CPUOnly(\"\"): %v", err)
	}
	if len(got.CPUs) == 0 {
		t.Errorf("CPUOnly(\"\") found no CPUs: %+v", got)
	}
}
