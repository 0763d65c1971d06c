//go:build cgo

package gpu

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Discover asks NVML, through lib, for the node's GPUs: index, UUID, name,
// PCI bus id, memory, NUMA node, local CPUs and the links between every
// pair; the CPU side (online CPUs, NUMA nodes) comes from sysfs under
// opts.SysRoot. It calls lib.Init first and lib.Shutdown before returning.
//
// Init failing with ERROR_LIBRARY_NOT_FOUND or ERROR_DRIVER_NOT_LOADED (or a
// nil lib) gives an error wrapping ErrNoNVML; no GPU gives ErrNoGPU. Other NVML failures
// are errors naming the call and wrapping its nvml.Return, except for what
// a GPU can do without: a failed CPU-affinity query gives that GPU its
// sysfs local_cpulist, else every online CPU, and a Warning either way; a
// failed NUMA or link query leaves that datum unknown (link failures are
// listed in Topology.Warning).
func Discover(lib nvml.Interface, opts *Options) (*Topology, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if lib == nil {
		return nil, fmt.Errorf("%w: nil nvml.Interface", ErrNoNVML)
	}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		if ret == nvml.ERROR_LIBRARY_NOT_FOUND || ret == nvml.ERROR_DRIVER_NOT_LOADED {
			return nil, fmt.Errorf("%w: nvml Init: %w", ErrNoNVML, ret)
		}
		return nil, nvmlError("Init", ret)
	}
	t, err := discover(lib, &o)
	if ret := lib.Shutdown(); ret != nvml.SUCCESS && err == nil {
		t, err = nil, nvmlError("Shutdown", ret)
	}
	return t, err
}

// loadNVML discovers through the system's libnvidia-ml.
func loadNVML(opts *Options) (*Topology, error) { return Discover(nvml.New(), opts) }

func nvmlError(call string, ret nvml.Return) error {
	return fmt.Errorf("gpu: nvml %s: %w", call, ret)
}

func discover(lib nvml.Interface, o *Options) (*Topology, error) {
	h, err := readHost(o.SysRoot)
	if err != nil {
		return nil, err
	}
	t := &Topology{Source: SourceNVML, CPUs: h.cpus, Nodes: h.nodes}
	var warnings []string
	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		t.Driver = v
	} else {
		warnings = append(warnings, nvmlError("SystemGetDriverVersion", ret).Error())
	}
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return nil, nvmlError("DeviceGetCount", ret)
	}
	if count == 0 {
		return nil, ErrNoGPU
	}
	handles := make([]nvml.Device, count)
	for i := range count {
		dev, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, nvmlError(fmt.Sprintf("DeviceGetHandleByIndex(%d)", i), ret)
		}
		handles[i] = dev
		d, err := describe(h, i, dev)
		if err != nil {
			return nil, err
		}
		t.Devices = append(t.Devices, d)
	}
	links, warns := linksBetween(t.Devices, handles)
	t.Links = links
	t.Warning = strings.Join(append(warnings, warns...), "; ")
	return t.fill(), nil
}

// describe fills one Device from its NVML handle.
func describe(h host, index int, dev nvml.Device) (Device, error) {
	d := Device{Index: index, NUMANode: -1}
	call := func(name string) string { return fmt.Sprintf("device %d %s", index, name) }
	var ret nvml.Return
	if d.UUID, ret = dev.GetUUID(); ret != nvml.SUCCESS {
		return d, nvmlError(call("GetUUID"), ret)
	}
	if d.Name, ret = dev.GetName(); ret != nvml.SUCCESS {
		return d, nvmlError(call("GetName"), ret)
	}
	pci, ret := dev.GetPciInfo()
	if ret != nvml.SUCCESS {
		return d, nvmlError(call("GetPciInfo"), ret)
	}
	d.PCIBusID = busID(pci)
	mem, ret := dev.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return d, nvmlError(call("GetMemoryInfo"), ret)
	}
	d.MemoryBytes = mem.Total

	// CPUs: the GPU's NUMA-node scope, else its ideal affinity, else the
	// PCI device's local_cpulist in sysfs, else all (with a warning).
	numCPUs := 1
	if len(h.cpus) > 0 {
		numCPUs = h.cpus[len(h.cpus)-1] + 1
	}
	var problem string
	mask, ret := dev.GetCpuAffinityWithinScope(numCPUs, nvml.AFFINITY_SCOPE_NODE)
	if ret != nvml.SUCCESS {
		var ret2 nvml.Return
		if mask, ret2 = dev.GetCpuAffinity(numCPUs); ret2 != nvml.SUCCESS {
			problem = fmt.Sprintf("%v; %v", nvmlError("GetCpuAffinityWithinScope", ret), nvmlError("GetCpuAffinity", ret2))
		}
	}
	if problem == "" {
		if d.CPUs = intersect(maskCPUs(mask), h.cpus); len(d.CPUs) == 0 {
			problem = "gpu: NVML CPU affinity names no online CPU"
		}
	}
	if problem != "" {
		if _, d.CPUs = pciLocality(h, d.PCIBusID); len(d.CPUs) > 0 {
			d.Warning = problem + "; using sysfs local_cpulist"
		} else {
			d.Warning = problem + "; using all CPUs"
			d.CPUs = slices.Clone(h.cpus)
		}
	}

	// NUMA node: NVML's answer when it names a node with CPUs (on coherent
	// platforms it names the GPU's own memory node instead), else the PCI
	// device's numa_node, else the node holding the GPU's CPUs.
	if n, ret := dev.GetNumaNodeId(); ret == nvml.SUCCESS && h.nodeHasCPUs(n) {
		d.NUMANode = n
	} else if n, _ := pciLocality(h, d.PCIBusID); n >= 0 {
		d.NUMANode = n
	} else {
		d.NUMANode = h.nodeOf(d.CPUs)
	}
	return d, nil
}

// busID returns the normalized PCI bus id of pci.
func busID(pci nvml.PciInfo) string {
	b := make([]byte, 0, len(pci.BusId))
	for _, c := range pci.BusId {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	if s, ok := normalizeBusID(string(b)); ok {
		return s
	}
	return fmt.Sprintf("%04x:%02x:%02x.0", pci.Domain, pci.Bus, pci.Device)
}

// maskCPUs expands an NVML CPU bitmask (CPU i is bit i%w of word i/w).
func maskCPUs(mask []uint) []int {
	var cpus []int
	for w, word := range mask {
		for word != 0 {
			b := bits.TrailingZeros(word)
			cpus = append(cpus, w*bits.UintSize+b)
			word &^= 1 << b
		}
	}
	return cpus
}

// linksBetween names the connection of every GPU pair: NVLinks first, then
// the common PCIe ancestor. NVLinks whose far end is no GPU of the node go
// to an NVSwitch; two GPUs on switches talk over min(their switch links).
func linksBetween(devs []Device, handles []nvml.Device) ([]Link, []string) {
	var warnings []string
	byBus := make(map[string]int, len(devs))
	for i, d := range devs {
		byBus[d.PCIBusID] = i
	}
	n := len(devs)
	direct := make([][]int, n)
	switched := make([]int, n)
	for i, dev := range handles {
		direct[i] = make([]int, n)
		for l := range nvml.NVLINK_MAX_LINKS {
			state, ret := dev.GetNvLinkState(l)
			if ret != nvml.SUCCESS {
				break // past the last link, or no NVLink at all
			}
			if state != nvml.FEATURE_ENABLED {
				continue
			}
			remote, ret := dev.GetNvLinkRemotePciInfo(l)
			if ret != nvml.SUCCESS {
				warnings = append(warnings, nvmlError(fmt.Sprintf("device %d GetNvLinkRemotePciInfo(%d)", i, l), ret).Error())
				continue
			}
			if j, ok := byBus[busID(remote)]; ok && j != i {
				direct[i][j]++
			} else if !ok {
				switched[i]++
			}
		}
	}
	var links []Link
	for a := range n {
		for b := a + 1; b < n; b++ {
			if nv := max(direct[a][b], direct[b][a]) + min(switched[a], switched[b]); nv > 0 {
				links = append(links, Link{A: a, B: b, Level: fmt.Sprintf("NVLINK x%d", nv)})
				continue
			}
			level, ret := handles[a].GetTopologyCommonAncestor(handles[b])
			if ret != nvml.SUCCESS {
				warnings = append(warnings, nvmlError(fmt.Sprintf("device %d GetTopologyCommonAncestor(%d)", a, b), ret).Error())
				continue
			}
			links = append(links, Link{A: a, B: b, Level: levelName(level)})
		}
	}
	return links, warnings
}

func levelName(l nvml.GpuTopologyLevel) string {
	switch l {
	case nvml.TOPOLOGY_INTERNAL:
		return "SELF"
	case nvml.TOPOLOGY_SINGLE:
		return "PIX"
	case nvml.TOPOLOGY_MULTIPLE:
		return "PXB"
	case nvml.TOPOLOGY_HOSTBRIDGE:
		return "PHB"
	case nvml.TOPOLOGY_NODE:
		return "NODE"
	case nvml.TOPOLOGY_SYSTEM:
		return "SYS"
	}
	return fmt.Sprintf("LEVEL%d", l)
}
