package gpu

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Load discovers the node's topology through the system's NVML. When NVML
// is unavailable (ErrNoNVML: no library, no driver, no cgo) or sees no GPU
// (ErrNoGPU), it returns CPUOnly's sysfs layout with Topology.Warning saying
// why, unless opts.RequireGPU, which makes that an error. That is logged
// once: at Info when sysfs shows no NVIDIA GPU either (a machine without
// one), at Warn when it does (GPUs NVML cannot see: a driver or build
// problem). Other NVML failures are returned as errors.
//
// Every CPU set is then narrowed to the CPUs this process may run on
// (sched_getaffinity), so placement never names a CPU a container's cpuset
// forbids; a GPU left with none gets the allowed CPUs and a Warning.
func Load(opts *Options) (*Topology, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	return load(&o, loadNVML)
}

// cause is the first clause of a Topology.Warning: why NVML was not used.
func cause(warning string) string {
	c, _, _ := strings.Cut(warning, ";")
	return c
}

// load is Load with the NVML discovery passed in, for tests.
func load(o *Options, discover func(*Options) (*Topology, error)) (*Topology, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	t, err := discover(o)
	switch {
	case err == nil:
	case !errors.Is(err, ErrNoNVML) && !errors.Is(err, ErrNoGPU):
		return nil, err
	case o.RequireGPU:
		return nil, fmt.Errorf("gpu: GPU required: %w", err)
	default:
		cause := err
		if t, err = CPUOnly(o.SysRoot); err != nil {
			return nil, err
		}
		t.Warning = fmt.Sprintf("%v; CPU and NUMA layout read from sysfs", cause)
	}
	if allowed, err := allowedCPUs(); err == nil {
		t = restrict(t, allowed)
	}
	switch {
	case t.Warning == "":
	case len(t.Devices) == 0:
		// A machine without an NVIDIA GPU is not degraded: say so once, as information.
		o.Logger.Info("no NVIDIA GPU found; workers placed on the CPUs", "source", t.Source, "nvml", cause(t.Warning))
	default:
		o.Logger.Warn("gpu topology incomplete", "source", t.Source, "warning", t.Warning)
	}
	for _, d := range t.Devices {
		if d.Warning != "" {
			o.Logger.Warn("gpu placement degraded", "gpu", d.Index, "warning", d.Warning)
		}
	}
	return t, nil
}

// restrict returns a copy of t whose CPU sets hold only CPUs in allowed
// (sorted). A set left empty becomes allowed, with a warning on a GPU.
func restrict(t *Topology, allowed []int) *Topology {
	if len(allowed) == 0 {
		return t
	}
	r := *t
	narrow := func(cpus []int) []int {
		if c := intersect(cpus, allowed); len(c) > 0 {
			return c
		}
		return slices.Clone(allowed)
	}
	r.CPUs = narrow(t.CPUs)
	r.Nodes = slices.Clone(t.Nodes)
	for i := range r.Nodes {
		r.Nodes[i].CPUs = intersect(r.Nodes[i].CPUs, allowed)
	}
	r.Devices = slices.Clone(t.Devices)
	for i, d := range r.Devices {
		if len(intersect(d.CPUs, allowed)) == 0 && d.Warning == "" {
			r.Devices[i].Warning = fmt.Sprintf("gpu: local CPUs %s outside this process's CPUs %s; using those",
				FormatCPUList(d.CPUs), FormatCPUList(allowed))
		}
		r.Devices[i].CPUs = narrow(d.CPUs)
	}
	return &r
}
