// Package gpu discovers the GPUs of a node and the CPUs next to them, and
// places loader workers on those CPUs (SPEC §7).
//
// Discovery goes through NVML (github.com/NVIDIA/go-nvml) behind an
// nvml.Interface, so tests run on go-nvml's fake servers. Without NVML
// (no libnvidia-ml, no driver, no GPU, or a build without cgo) Load falls
// back to the layout the kernel publishes under /sys: NUMA nodes, online
// CPUs, and NVIDIA PCI devices with their local CPUs, and says so in
// Topology.Warning.
//
// Placement is pure: Place turns a Topology and a worker count into one Pool
// per GPU (the CPUs local to it, its share of the workers) plus a default
// pool over every CPU for requests that name no GPU. Pool.Run runs a pool's
// workers, each locked to an OS thread pinned to the pool's CPUs.
//
// Discover is only built with cgo, because go-nvml needs it; Load, CPUOnly,
// Place and the rest work in every build.
package gpu
