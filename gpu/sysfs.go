package gpu

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// nvidiaVendor is NVIDIA's PCI vendor id.
const nvidiaVendor = "0x10de"

// CPUOnly reads the host layout from the sysfs tree under sysRoot ("" means
// "/"): online CPUs, NUMA nodes with their CPUs and memory, and NVIDIA GPUs
// on the PCI bus with their NUMA node and local CPUs (no UUID, no memory:
// only NVML knows those). Without /sys it reports runtime.NumCPU CPUs and no
// nodes. Source is SourceSysfs.
func CPUOnly(sysRoot string) (*Topology, error) {
	h, err := readHost(sysRoot)
	if err != nil {
		return nil, err
	}
	t := &Topology{Source: SourceSysfs, CPUs: h.cpus, Nodes: h.nodes}
	t.Devices, err = readPCIGPUs(h)
	if err != nil {
		return nil, err
	}
	return t.fill(), nil
}

// host is the CPU side of a node, read from sysfs.
type host struct {
	root  string
	cpus  []int
	nodes []NUMANode
}

func readHost(sysRoot string) (host, error) {
	if sysRoot == "" {
		sysRoot = "/"
	}
	h := host{root: sysRoot}
	online, err := os.ReadFile(h.path("sys/devices/system/cpu/online"))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		for c := range runtime.NumCPU() {
			h.cpus = append(h.cpus, c)
		}
	case err != nil:
		return h, fmt.Errorf("gpu: read online CPUs: %w", err)
	default:
		if h.cpus, err = ParseCPUList(string(online)); err != nil {
			return h, fmt.Errorf("gpu: online CPUs: %w", err)
		}
	}
	h.nodes, err = readNodes(h)
	return h, err
}

func (h host) path(rel string) string { return filepath.Join(h.root, filepath.FromSlash(rel)) }

// readNodes lists /sys/devices/system/node/nodeN, sorted by N.
func readNodes(h host) ([]NUMANode, error) {
	dir := h.path("sys/devices/system/node")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("gpu: list NUMA nodes: %w", err)
	}
	var nodes []NUMANode
	for _, e := range entries {
		id, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "node"))
		if !strings.HasPrefix(e.Name(), "node") || err != nil || id < 0 {
			continue
		}
		n := NUMANode{ID: id}
		list, err := os.ReadFile(filepath.Join(dir, e.Name(), "cpulist"))
		if err != nil {
			return nil, fmt.Errorf("gpu: NUMA node %d: %w", id, err)
		}
		if n.CPUs, err = ParseCPUList(string(list)); err != nil {
			return nil, fmt.Errorf("gpu: NUMA node %d: %w", id, err)
		}
		n.CPUs = intersect(n.CPUs, h.cpus)
		n.MemoryBytes = nodeMemory(filepath.Join(dir, e.Name(), "meminfo"))
		nodes = append(nodes, n)
	}
	slices.SortFunc(nodes, func(a, b NUMANode) int { return a.ID - b.ID })
	return nodes, nil
}

// nodeMemory reads "Node 0 MemTotal: 7563476 kB"; 0 when absent.
func nodeMemory(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 4 && f[2] == "MemTotal:" {
			kb, err := strconv.ParseUint(f[3], 10, 64)
			if err == nil {
				return kb * 1024
			}
		}
	}
	return 0
}

// readPCIGPUs lists NVIDIA display controllers (class 0x03xxxx) under
// /sys/bus/pci/devices in bus order, which is NVML's index order.
func readPCIGPUs(h host) ([]Device, error) {
	dir := h.path("sys/bus/pci/devices")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("gpu: list PCI devices: %w", err)
	}
	var devs []Device
	for _, e := range entries {
		bus, ok := normalizeBusID(e.Name())
		if !ok || readAttr(dir, e.Name(), "vendor") != nvidiaVendor ||
			!strings.HasPrefix(readAttr(dir, e.Name(), "class"), "0x03") {
			continue
		}
		d := Device{
			PCIBusID: bus,
			Name:     "NVIDIA PCI device " + readAttr(dir, e.Name(), "device"),
		}
		d.NUMANode, d.CPUs = pciLocality(h, bus)
		if len(d.CPUs) == 0 {
			d.CPUs = slices.Clone(h.cpus)
		}
		if d.NUMANode < 0 {
			d.NUMANode = h.nodeOf(d.CPUs)
		}
		devs = append(devs, d)
	}
	slices.SortFunc(devs, func(a, b Device) int { return strings.Compare(a.PCIBusID, b.PCIBusID) })
	for i := range devs {
		devs[i].Index = i
	}
	return devs, nil
}

// pciLocality reads a PCI device's numa_node (-1 when unknown) and its
// local online CPUs (nil when unknown).
func pciLocality(h host, bus string) (node int, cpus []int) {
	dir := h.path("sys/bus/pci/devices")
	node = -1
	if n, err := strconv.Atoi(readAttr(dir, bus, "numa_node")); err == nil && n >= 0 {
		node = n
	}
	if c, err := ParseCPUList(readAttr(dir, bus, "local_cpulist")); err == nil {
		cpus = intersect(c, h.cpus)
	}
	return node, cpus
}

func readAttr(dir, dev, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, dev, name))
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(string(b)))
}

// nodeOf returns the node whose CPUs contain all of cpus, or -1.
func (h host) nodeOf(cpus []int) int {
	if len(cpus) == 0 {
		return -1
	}
	for _, n := range h.nodes {
		if len(intersect(cpus, n.CPUs)) == len(cpus) {
			return n.ID
		}
	}
	return -1
}

// nodeHasCPUs reports whether NUMA node id exists and has CPUs.
func (h host) nodeHasCPUs(id int) bool {
	for _, n := range h.nodes {
		if n.ID == id {
			return len(n.CPUs) > 0
		}
	}
	return false
}
