package gpu

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
)

var (
	// ErrNoNVML reports that NVML cannot be used: libnvidia-ml is missing,
	// the kernel driver is not loaded, or the binary was built without cgo.
	ErrNoNVML = errors.New("gpu: NVML not available")
	// ErrNoGPU reports that NVML works but sees no GPU.
	ErrNoGPU = errors.New("gpu: no GPU found")
	// ErrUnknownGPU reports a GPU name (index, UUID or PCI bus id) that the
	// node does not have. The loader maps it to InvalidArgument.
	ErrUnknownGPU = errors.New("gpu: no such GPU")
	// ErrBadCPUSet reports a CPU list that cannot be parsed or pinned to.
	ErrBadCPUSet = errors.New("gpu: bad CPU set")
)

// Source values of a Topology.
const (
	SourceNVML  = "nvml"
	SourceSysfs = "sysfs"
)

// A Device is one GPU.
type Device struct {
	Index       int    `json:"index"`        // NVML index (PCI bus order)
	UUID        string `json:"uuid"`         // "GPU-…"; empty from sysfs
	Name        string `json:"name"`         // product name
	PCIBusID    string `json:"pci_bus_id"`   // "0000:3b:00.0", lower case
	MemoryBytes uint64 `json:"memory_bytes"` // 0 when unknown
	NUMANode    int    `json:"numa_node"`    // -1 unknown
	CPUs        []int  `json:"cpus"`         // CPUs local to the GPU
	// Warning says what could not be learnt about this GPU (its CPU
	// affinity, say) and what was assumed instead.
	Warning string `json:"warning,omitempty"`
}

// A NUMANode is one NUMA node of the host.
type NUMANode struct {
	ID          int    `json:"id"`
	CPUs        []int  `json:"cpus"`
	MemoryBytes uint64 `json:"memory_bytes"`
}

// A Link is the connection between two GPUs, named by their positions in
// Topology.Devices (A < B). Level is "NVLINK xN" when N NVLinks join them
// (directly or through NVSwitches), else the closest common PCIe ancestor
// as nvidia-smi names it: "PIX", "PXB", "PHB", "NODE" or "SYS".
type Link struct {
	A     int    `json:"a"`
	B     int    `json:"b"`
	Level string `json:"level"`
}

// A Topology is what loaderd knows about the node's GPUs and CPUs.
type Topology struct {
	Source  string     `json:"source"` // SourceNVML or SourceSysfs
	Driver  string     `json:"driver"` // NVIDIA driver version; empty from sysfs
	Devices []Device   `json:"devices"`
	Nodes   []NUMANode `json:"nodes"`
	Links   []Link     `json:"links"`
	CPUs    []int      `json:"cpus"` // all online CPUs
	// Warning says why the topology is incomplete (no NVML, say).
	Warning string `json:"warning,omitempty"`
}

// Options configure Discover and Load. The zero value is the default.
type Options struct {
	SysRoot    string       // root of the sysfs tree; "" means "/"
	RequireGPU bool         // fail instead of falling back to sysfs
	Logger     *slog.Logger // Load's warnings; nil means discard
}

// FindGPU returns the position in t.Devices of the GPU named by id: its
// index ("3"), its UUID, or its PCI bus id (with or without the "0000:"
// domain); UUIDs and bus ids match case-insensitively. Any other id,
// including "", gives an error wrapping ErrUnknownGPU.
func (t *Topology) FindGPU(id string) (int, error) {
	id = strings.TrimSpace(id)
	if t != nil && id != "" {
		if n, err := strconv.Atoi(id); err == nil {
			for i, d := range t.Devices {
				if d.Index == n {
					return i, nil
				}
			}
		}
		bus, isBus := normalizeBusID(id)
		for i, d := range t.Devices {
			if d.UUID != "" && (strings.EqualFold(d.UUID, id) || strings.EqualFold(strings.TrimPrefix(d.UUID, "GPU-"), id)) {
				return i, nil
			}
			if isBus && d.PCIBusID != "" {
				if db, ok := normalizeBusID(d.PCIBusID); ok && db == bus {
					return i, nil
				}
			}
		}
	}
	return -1, fmt.Errorf("%w: %q", ErrUnknownGPU, id)
}

// normalizeBusID turns "00000000:3B:00.0", "0000:3b:00.0" and "3b:00.0" into
// "0000:3b:00.0". ok is false when s is not a PCI bus id.
func normalizeBusID(s string) (string, bool) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(s)), ":")
	var domain uint64
	switch len(parts) {
	case 2:
	case 3:
		d, err := strconv.ParseUint(parts[0], 16, 32)
		if err != nil {
			return "", false
		}
		domain, parts = d, parts[1:]
	default:
		return "", false
	}
	devFn := strings.Split(parts[1], ".")
	if len(devFn) != 2 {
		return "", false
	}
	bus, err1 := strconv.ParseUint(parts[0], 16, 8)
	dev, err2 := strconv.ParseUint(devFn[0], 16, 8)
	fn, err3 := strconv.ParseUint(devFn[1], 16, 8)
	if err1 != nil || err2 != nil || err3 != nil || dev > 0x1f || fn > 7 {
		return "", false
	}
	return fmt.Sprintf("%04x:%02x:%02x.%x", domain, bus, dev, fn), true
}

// maxCPU bounds the CPU numbers loaderd accepts (unix.CPUSet's size).
const maxCPU = 1024

// ParseCPUList parses a kernel CPU list such as "0-3,8,10-11" into sorted,
// distinct CPU numbers. An empty list gives no CPUs.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var cpus []int
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b >= maxCPU {
			return nil, fmt.Errorf("%w: %q", ErrBadCPUSet, s)
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	slices.Sort(cpus)
	return slices.Compact(cpus), nil
}

// FormatCPUList writes CPU numbers as a kernel CPU list ("0-3,8").
func FormatCPUList(cpus []int) string {
	c := slices.Clone(cpus)
	slices.Sort(c)
	c = slices.Compact(c)
	var b strings.Builder
	for i := 0; i < len(c); {
		j := i
		for j+1 < len(c) && c[j+1] == c[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(c[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(c[j]))
		}
		i = j + 1
	}
	return b.String()
}

// fill replaces t's nil lists with empty ones, so JSON shows [] not null.
func (t *Topology) fill() *Topology {
	if t.Devices == nil {
		t.Devices = []Device{}
	}
	if t.Nodes == nil {
		t.Nodes = []NUMANode{}
	}
	if t.Links == nil {
		t.Links = []Link{}
	}
	if t.CPUs == nil {
		t.CPUs = []int{}
	}
	return t
}

// intersect returns the CPUs in both sorted lists a and b.
func intersect(a, b []int) []int {
	var out []int
	for _, c := range a {
		if _, ok := slices.BinarySearch(b, c); ok {
			out = append(out, c)
		}
	}
	return out
}
