package gpu_test

import (
	"fmt"

	"github.com/loaderd/loaderd/gpu"
)

// Two GPUs, one per socket: each GPU's workers run on its socket's CPUs,
// and a request naming a GPU by UUID or PCI bus id finds its pool.
func ExamplePlace() {
	topo := &gpu.Topology{
		Source: gpu.SourceNVML,
		CPUs:   []int{0, 1, 2, 3, 4, 5, 6, 7},
		Devices: []gpu.Device{
			{Index: 0, UUID: "GPU-8f2c", PCIBusID: "0000:18:00.0", NUMANode: 0, CPUs: []int{0, 1, 2, 3}},
			{Index: 1, UUID: "GPU-1d7e", PCIBusID: "0000:86:00.0", NUMANode: 1, CPUs: []int{4, 5, 6, 7}},
		},
	}
	p := gpu.Place(topo, 6)
	for _, pool := range p.Pools {
		fmt.Printf("gpu %2d: %d workers on CPUs %s\n", pool.GPU, pool.Workers, gpu.FormatCPUList(pool.CPUs))
	}
	for _, id := range []string{"1", "gpu-8f2c", "86:00.0", ""} {
		dev, err := topo.FindGPU(id)
		if err != nil {
			fmt.Printf("%q: %v → default pool %d\n", id, err, p.PoolFor(-1))
			continue
		}
		fmt.Printf("%q: GPU %d → pool %d\n", id, dev, p.PoolFor(dev))
	}
	// Output:
	// gpu  0: 3 workers on CPUs 0-3
	// gpu  1: 3 workers on CPUs 4-7
	// gpu -1: 6 workers on CPUs 0-7
	// "1": GPU 1 → pool 1
	// "gpu-8f2c": GPU 0 → pool 0
	// "86:00.0": GPU 1 → pool 1
	// "": gpu: no such GPU: "" → default pool 2
}

// Without NVML, CPUOnly reads the layout the kernel publishes.
func ExampleCPUOnly() {
	topo, err := gpu.CPUOnly("/nonexistent") // no /sys there: runtime.NumCPU CPUs
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(topo.Source, len(topo.CPUs) > 0, len(topo.Devices))
	// Output: sysfs true 0
}
