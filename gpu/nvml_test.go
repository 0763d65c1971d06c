//go:build cgo

package gpu

import (
	"errors"
	"fmt"
	"math/bits"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/gpus"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
)

// The CPU sets of the two sockets in testdata/sysfs-dgx.txtar.
var (
	dgxNode0 = append(seq(0, 55), seq(112, 167)...)
	dgxNode1 = append(seq(56, 111), seq(168, 223)...)
	dgxAll   = seq(0, 223)
)

// fakeGPU is what a test sets on one fake device.
type fakeGPU struct {
	bus         int         // PCI bus number
	numa        int         // answer of GetNumaNodeId
	numaRet     nvml.Return // its status (0 = SUCCESS)
	cpus        []int       // affinity
	scopeRet    nvml.Return // status of GetCpuAffinityWithinScope
	affinityRet nvml.Return // status of GetCpuAffinity
	switchLinks int         // active NVLinks to NVSwitches
	peerLinks   map[int]int // active NVLinks straight to another GPU (by position)
	ancestor    func(int) nvml.GpuTopologyLevel
}

// counts records the calls a test checks.
type counts struct{ init, shutdown int }

func busString(bus int) string { return fmt.Sprintf("00000000:%02X:00.0", bus) }

func pciInfo(bus int) nvml.PciInfo {
	p := nvml.PciInfo{Bus: uint32(bus)}
	for i, c := range busString(bus) {
		p.BusId[i] = int8(c)
	}
	return p
}

func mask(cpus []int, n int) []uint {
	m := make([]uint, (n+bits.UintSize-1)/bits.UintSize)
	for _, c := range cpus {
		m[c/bits.UintSize] |= 1 << (c % bits.UintSize)
	}
	return m
}

// fakeServer sets, on a go-nvml fake server, every call Discover makes.
func fakeServer(s *server.Server, specs []fakeGPU) (*server.Server, *counts) {
	c := &counts{}
	init, shutdown := s.InitFunc, s.ShutdownFunc
	s.InitFunc = func() nvml.Return { c.init++; return init() }
	s.ShutdownFunc = func() nvml.Return { c.shutdown++; return shutdown() }
	for i, spec := range specs {
		d := s.Devices[i].(*server.Device)
		d.GetPciInfoFunc = func() (nvml.PciInfo, nvml.Return) { return pciInfo(spec.bus), nvml.SUCCESS }
		d.GetNumaNodeIdFunc = func() (int, nvml.Return) { return spec.numa, spec.numaRet }
		d.GetCpuAffinityWithinScopeFunc = func(n int, scope nvml.AffinityScope) ([]uint, nvml.Return) {
			if scope != nvml.AFFINITY_SCOPE_NODE {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return mask(spec.cpus, n), spec.scopeRet
		}
		d.GetCpuAffinityFunc = func(n int) ([]uint, nvml.Return) { return mask(spec.cpus, n), spec.affinityRet }
		var remotes []nvml.PciInfo
		for l := range spec.switchLinks {
			remotes = append(remotes, pciInfo(0xf0+l%4)) // four NVSwitches
		}
		for _, peer := range slices.Sorted(mapKeys(spec.peerLinks)) {
			for range spec.peerLinks[peer] {
				remotes = append(remotes, pciInfo(specs[peer].bus))
			}
		}
		d.GetNvLinkStateFunc = func(l int) (nvml.EnableState, nvml.Return) {
			if len(remotes) == 0 {
				return 0, nvml.ERROR_NOT_SUPPORTED
			}
			if l >= len(remotes)+2 {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			if l >= len(remotes) {
				return nvml.FEATURE_DISABLED, nvml.SUCCESS // two idle links
			}
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		}
		d.GetNvLinkRemotePciInfoFunc = func(l int) (nvml.PciInfo, nvml.Return) { return remotes[l], nvml.SUCCESS }
		d.GetTopologyCommonAncestorFunc = func(other nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) {
			j := other.(*server.Device).Index
			if spec.ancestor != nil {
				return spec.ancestor(j), nvml.SUCCESS
			}
			if specs[j].numa == spec.numa {
				return nvml.TOPOLOGY_NODE, nvml.SUCCESS
			}
			return nvml.TOPOLOGY_SYSTEM, nvml.SUCCESS
		}
	}
	return s, c
}

func mapKeys(m map[int]int) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

var dgxH100Buses = []int{0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb}

// dgx returns 8 fake GPUs, four per socket, each with links NVSwitch links.
func dgx(links int) []fakeGPU {
	specs := make([]fakeGPU, 8)
	for i := range specs {
		specs[i] = fakeGPU{bus: dgxH100Buses[i], numa: i / 4, cpus: dgxNode0, switchLinks: links}
		if i >= 4 {
			specs[i].cpus = dgxNode1
		}
	}
	return specs
}

func allPairs(n int, level string) []Link {
	var links []Link
	for a := range n {
		for b := a + 1; b < n; b++ {
			links = append(links, Link{A: a, B: b, Level: level})
		}
	}
	return links
}

func TestDiscover(t *testing.T) {
	failAffinity := dgx(12)
	failAffinity[5].scopeRet, failAffinity[5].affinityRet = nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_UNKNOWN
	onlyIdeal := dgx(18)
	onlyIdeal[2].scopeRet = nvml.ERROR_FUNCTION_NOT_FOUND
	noNUMA := dgx(18)
	for i := range noNUMA {
		noNUMA[i].numaRet = nvml.ERROR_NOT_SUPPORTED
	}
	sysfsKnows := dgx(18)[:2]
	sysfsKnows[1].bus = 0xcc // the bus testdata/sysfs-dgx.txtar lists
	sysfsKnows[1].numaRet, sysfsKnows[1].scopeRet, sysfsKnows[1].affinityRet =
		nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NOT_SUPPORTED, nvml.ERROR_NOT_SUPPORTED
	coherent := dgx(18)[:1]
	coherent[0].numa = 2 // the GPU's own memory node, which has no CPUs

	tests := []struct {
		name      string
		lib       *server.Server
		specs     []fakeGPU
		wantName  string
		wantMem   uint64
		wantNUMA  []int
		wantCPUs  [][]int
		wantWarn  []bool // per device
		wantLinks []Link
	}{
		{
			name:     "one H100",
			lib:      dgxh100.NewWithGPUs(gpus.H100_SXM5_80GB),
			specs:    []fakeGPU{{bus: 0x18, numa: 1, cpus: dgxNode1}},
			wantName: "NVIDIA H100 80GB HBM3", wantMem: 80 << 30,
			wantNUMA: []int{1}, wantCPUs: [][]int{dgxNode1},
		},
		{
			name: "two A100s on two sockets joined by an NVLink bridge",
			lib:  dgxa100.NewWithGPUs(gpus.Multiple(2, gpus.A100_SXM4_40GB)...),
			specs: []fakeGPU{
				{bus: 0x07, numa: 0, cpus: dgxNode0, peerLinks: map[int]int{1: 4}},
				{bus: 0x87, numa: 1, cpus: dgxNode1, peerLinks: map[int]int{0: 4}},
			},
			wantName: "Mock NVIDIA A100-SXM4-40GB", wantMem: 40 << 30,
			wantNUMA: []int{0, 1}, wantCPUs: [][]int{dgxNode0, dgxNode1},
			wantLinks: []Link{{A: 0, B: 1, Level: "NVLINK x4"}},
		},
		{
			name: "two A100s without NVLink behind one PCIe switch",
			lib:  dgxa100.NewWithGPUs(gpus.Multiple(2, gpus.A100_SXM4_40GB)...),
			specs: []fakeGPU{
				{bus: 0x07, numa: 0, cpus: dgxNode0, ancestor: func(int) nvml.GpuTopologyLevel { return nvml.TOPOLOGY_SINGLE }},
				{bus: 0x0f, numa: 0, cpus: dgxNode0},
			},
			wantName: "Mock NVIDIA A100-SXM4-40GB", wantMem: 40 << 30,
			wantNUMA: []int{0, 0}, wantCPUs: [][]int{dgxNode0, dgxNode0},
			wantLinks: []Link{{A: 0, B: 1, Level: "PIX"}},
		},
		{
			name:     "eight H100s split over two sockets, NVSwitch",
			lib:      dgxh100.New(),
			specs:    dgx(18),
			wantName: "NVIDIA H100 80GB HBM3", wantMem: 80 << 30,
			wantNUMA:  []int{0, 0, 0, 0, 1, 1, 1, 1},
			wantCPUs:  [][]int{dgxNode0, dgxNode0, dgxNode0, dgxNode0, dgxNode1, dgxNode1, dgxNode1, dgxNode1},
			wantLinks: allPairs(8, "NVLINK x18"),
		},
		{
			name:     "eight A100s, GPU 5's affinity query fails",
			lib:      dgxa100.New(),
			specs:    failAffinity,
			wantName: "Mock NVIDIA A100-SXM4-40GB", wantMem: 40 << 30,
			wantNUMA:  []int{0, 0, 0, 0, 1, 1, 1, 1},
			wantCPUs:  [][]int{dgxNode0, dgxNode0, dgxNode0, dgxNode0, dgxNode1, dgxAll, dgxNode1, dgxNode1},
			wantWarn:  []bool{5: true},
			wantLinks: allPairs(8, "NVLINK x12"),
		},
		{
			name:     "GPU 1's affinity query fails, sysfs knows its CPUs and node",
			lib:      dgxh100.NewWithGPUs(gpus.Multiple(2, gpus.H100_SXM5_80GB)...),
			specs:    sysfsKnows,
			wantName: "NVIDIA H100 80GB HBM3", wantMem: 80 << 30,
			wantNUMA:  []int{0, 1},
			wantCPUs:  [][]int{dgxNode0, dgxNode1},
			wantWarn:  []bool{1: true},
			wantLinks: []Link{{A: 0, B: 1, Level: "NVLINK x18"}},
		},
		{
			name:     "GetCpuAffinityWithinScope missing, GetCpuAffinity answers",
			lib:      dgxh100.New(),
			specs:    onlyIdeal,
			wantName: "NVIDIA H100 80GB HBM3", wantMem: 80 << 30,
			wantNUMA:  []int{0, 0, 0, 0, 1, 1, 1, 1},
			wantCPUs:  [][]int{dgxNode0, dgxNode0, dgxNode0, dgxNode0, dgxNode1, dgxNode1, dgxNode1, dgxNode1},
			wantLinks: allPairs(8, "NVLINK x18"),
		},
		{
			name:     "NUMA node unsupported: derived from the CPUs",
			lib:      dgxh100.New(),
			specs:    noNUMA,
			wantName: "NVIDIA H100 80GB HBM3", wantMem: 80 << 30,
			wantNUMA:  []int{0, 0, 0, 0, 1, 1, 1, 1},
			wantCPUs:  [][]int{dgxNode0, dgxNode0, dgxNode0, dgxNode0, dgxNode1, dgxNode1, dgxNode1, dgxNode1},
			wantLinks: allPairs(8, "NVLINK x18"),
		},
		{
			name:     "NVML names a CPU-less memory node: the CPUs' node wins",
			lib:      dgxh100.NewWithGPUs(gpus.H100_SXM5_80GB),
			specs:    coherent,
			wantName: "NVIDIA H100 80GB HBM3", wantMem: 80 << 30,
			wantNUMA: []int{0}, wantCPUs: [][]int{dgxNode0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lib, calls := fakeServer(tc.lib, tc.specs)
			topo, err := Discover(lib, &Options{SysRoot: fakeSys(t, "sysfs-dgx")})
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if calls.init != 1 || calls.shutdown != 1 {
				t.Errorf("Init called %d times, Shutdown %d; want 1 and 1", calls.init, calls.shutdown)
			}
			if topo.Source != SourceNVML || topo.Driver != "550.54.15" || topo.Warning != "" {
				t.Errorf("source %q driver %q warning %q; want nvml, 550.54.15, none", topo.Source, topo.Driver, topo.Warning)
			}
			if !reflect.DeepEqual(topo.CPUs, dgxAll) || len(topo.Nodes) != 3 {
				t.Errorf("CPUs %s, %d nodes; want 0-223 and 3 nodes", FormatCPUList(topo.CPUs), len(topo.Nodes))
			}
			if len(topo.Devices) != len(tc.specs) {
				t.Fatalf("%d devices, want %d", len(topo.Devices), len(tc.specs))
			}
			for i, d := range topo.Devices {
				uuid := lib.Devices[i].(*server.Device).UUID
				bus := strings.ToLower(busString(tc.specs[i].bus)[4:])
				if d.Index != i || d.UUID != uuid || d.Name != tc.wantName || d.PCIBusID != bus || d.MemoryBytes != tc.wantMem {
					t.Errorf("device %d = index %d, UUID %s, name %q, bus %s, memory %d; want %d, %s, %q, %s, %d",
						i, d.Index, d.UUID, d.Name, d.PCIBusID, d.MemoryBytes, i, uuid, tc.wantName, bus, tc.wantMem)
				}
				if d.NUMANode != tc.wantNUMA[i] {
					t.Errorf("device %d NUMA node %d, want %d", i, d.NUMANode, tc.wantNUMA[i])
				}
				if !reflect.DeepEqual(d.CPUs, tc.wantCPUs[i]) {
					t.Errorf("device %d CPUs %s, want %s", i, FormatCPUList(d.CPUs), FormatCPUList(tc.wantCPUs[i]))
				}
				wantWarn := i < len(tc.wantWarn) && tc.wantWarn[i]
				if (d.Warning != "") != wantWarn {
					t.Errorf("device %d warning %q, want one: %v", i, d.Warning, wantWarn)
				}
				if wantWarn && !strings.Contains(d.Warning, "GetCpuAffinity") {
					t.Errorf("device %d warning %q does not name the failed call", i, d.Warning)
				}
			}
			if (len(topo.Links) > 0 || len(tc.wantLinks) > 0) && !reflect.DeepEqual(topo.Links, tc.wantLinks) {
				t.Errorf("links = %v\nwant %v", topo.Links, tc.wantLinks)
			}
		})
	}
}

func TestDiscoverErrors(t *testing.T) {
	tests := []struct {
		name         string
		breakIt      func(s *server.Server)
		want         []error // errors.Is targets
		wantCall     string  // in the message
		wantShutdown int
	}{
		{
			name:    "library not found",
			breakIt: func(s *server.Server) { s.InitFunc = func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND } },
			want:    []error{ErrNoNVML, nvml.ERROR_LIBRARY_NOT_FOUND}, wantCall: "Init",
		},
		{
			name:    "driver not loaded",
			breakIt: func(s *server.Server) { s.InitFunc = func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED } },
			want:    []error{ErrNoNVML}, wantCall: "Init",
		},
		{
			name:    "Init fails otherwise",
			breakIt: func(s *server.Server) { s.InitFunc = func() nvml.Return { return nvml.ERROR_NO_PERMISSION } },
			want:    []error{nvml.ERROR_NO_PERMISSION}, wantCall: "nvml Init",
		},
		{
			name:    "no GPU",
			breakIt: func(s *server.Server) { s.Devices = nil },
			want:    []error{ErrNoGPU}, wantShutdown: 1,
		},
		{
			name: "count fails",
			breakIt: func(s *server.Server) {
				s.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
			},
			want: []error{nvml.ERROR_UNKNOWN}, wantCall: "DeviceGetCount", wantShutdown: 1,
		},
		{
			name: "a handle fails",
			breakIt: func(s *server.Server) {
				s.DeviceGetHandleByIndexFunc = func(int) (nvml.Device, nvml.Return) { return nil, nvml.ERROR_GPU_IS_LOST }
			},
			want: []error{nvml.ERROR_GPU_IS_LOST}, wantCall: "DeviceGetHandleByIndex(0)", wantShutdown: 1,
		},
		{
			name: "GPU 3's UUID fails",
			breakIt: func(s *server.Server) {
				s.Devices[3].(*server.Device).GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
			},
			want: []error{nvml.ERROR_GPU_IS_LOST}, wantCall: "device 3 GetUUID", wantShutdown: 1,
		},
		{
			name: "GPU 1's memory fails",
			breakIt: func(s *server.Server) {
				s.Devices[1].(*server.Device).GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_UNKNOWN }
			},
			want: []error{nvml.ERROR_UNKNOWN}, wantCall: "device 1 GetMemoryInfo", wantShutdown: 1,
		},
		{
			name:    "Shutdown fails",
			breakIt: func(s *server.Server) { s.ShutdownFunc = func() nvml.Return { return nvml.ERROR_UNINITIALIZED } },
			want:    []error{nvml.ERROR_UNINITIALIZED}, wantCall: "Shutdown", wantShutdown: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := dgxh100.New()
			tc.breakIt(s)
			lib, calls := fakeServer(s, dgx(18)[:len(s.Devices)])
			topo, err := Discover(lib, &Options{SysRoot: fakeSys(t, "sysfs-dgx")})
			if err == nil {
				t.Fatalf("Discover = %+v, want an error", topo)
			}
			for _, target := range tc.want {
				if !errors.Is(err, target) {
					t.Errorf("Discover error %q is not %v", err, target)
				}
			}
			if !strings.Contains(err.Error(), tc.wantCall) || !strings.HasPrefix(err.Error(), "gpu: ") {
				t.Errorf("Discover error %q does not name %q with the package prefix", err, tc.wantCall)
			}
			if calls.shutdown != tc.wantShutdown {
				t.Errorf("Shutdown called %d times, want %d", calls.shutdown, tc.wantShutdown)
			}
		})
	}
}

func TestDiscoverNilLib(t *testing.T) {
	if _, err := Discover(nil, nil); !errors.Is(err, ErrNoNVML) {
		t.Errorf("Discover(nil) = %v, want ErrNoNVML", err)
	}
}

// TestDiscoverRealLibraryMissing takes go-nvml's real dlopen path with a
// library that does not exist: Init answers ERROR_LIBRARY_NOT_FOUND.
func TestDiscoverRealLibraryMissing(t *testing.T) {
	lib := nvml.New(nvml.WithLibraryPath("/nonexistent/libnvidia-ml.so.1"))
	_, err := Discover(lib, nil)
	if !errors.Is(err, ErrNoNVML) || !errors.Is(err, nvml.ERROR_LIBRARY_NOT_FOUND) {
		t.Fatalf("Discover = %v, want ErrNoNVML wrapping ERROR_LIBRARY_NOT_FOUND", err)
	}
}

func TestLevelName(t *testing.T) {
	tests := []struct {
		name  string
		level nvml.GpuTopologyLevel
		want  string
	}{
		{name: "same board", level: nvml.TOPOLOGY_INTERNAL, want: "SELF"},
		{name: "one PCIe switch", level: nvml.TOPOLOGY_SINGLE, want: "PIX"},
		{name: "several PCIe switches", level: nvml.TOPOLOGY_MULTIPLE, want: "PXB"},
		{name: "host bridge", level: nvml.TOPOLOGY_HOSTBRIDGE, want: "PHB"},
		{name: "NUMA node", level: nvml.TOPOLOGY_NODE, want: "NODE"},
		{name: "across sockets", level: nvml.TOPOLOGY_SYSTEM, want: "SYS"},
		{name: "unknown", level: 7, want: "LEVEL7"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := levelName(tc.level); got != tc.want {
				t.Errorf("levelName(%d) = %q, want %q", tc.level, got, tc.want)
			}
		})
	}
}

func TestDiscoverDegrades(t *testing.T) {
	s := dgxa100.NewWithGPUs(gpus.Multiple(2, gpus.A100_SXM4_40GB)...)
	lib, _ := fakeServer(s, []fakeGPU{
		{bus: 0x07, numa: 0, cpus: dgxNode0},
		{bus: 0x87, numa: 1, cpus: dgxNode1},
	})
	for _, d := range lib.Devices {
		d.(*server.Device).GetTopologyCommonAncestorFunc = func(nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) {
			return 0, nvml.ERROR_NOT_SUPPORTED
		}
	}
	lib.SystemGetDriverVersionFunc = func() (string, nvml.Return) { return "", nvml.ERROR_UNKNOWN }
	topo, err := Discover(lib, &Options{SysRoot: fakeSys(t, "sysfs-dgx")})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	if len(topo.Links) != 0 || topo.Driver != "" {
		t.Errorf("links %v, driver %q; want none", topo.Links, topo.Driver)
	}
	for _, call := range []string{"SystemGetDriverVersion", "device 0 GetTopologyCommonAncestor(1)"} {
		if !strings.Contains(topo.Warning, call) {
			t.Errorf("warning %q does not name %s", topo.Warning, call)
		}
	}
}
