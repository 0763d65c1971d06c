package gpu

import (
	"context"
	"slices"

	"golang.org/x/sync/errgroup"
)

// A Pool is a set of workers and the CPUs they run on.
type Pool struct {
	GPU     int   `json:"gpu"`     // position in Topology.Devices; -1 = default pool
	CPUs    []int `json:"cpus"`    // CPUs the workers are pinned to
	Workers int   `json:"workers"` // ≥ 1
}

// A Placement is where loaderd runs the work that feeds each GPU: one pool
// per GPU, in device order, then the default pool for requests that name
// no GPU.
type Placement struct {
	Pools []Pool `json:"pools"`
}

// Place plans the worker pools for t with about workers workers in all
// (values below 1 mean 1). Each GPU's pool runs on the GPU's local CPUs (all
// CPUs when those are unknown), so GPUs on one NUMA node share its CPUs.
// Every GPU gets an equal share of the workers, at least one: data-parallel
// ranks consume batches at the same rate, and the slowest rank sets the
// pace. The default pool spans every CPU with all the workers and is the
// only pool when t has no GPU. Place is pure; the pools share no memory
// with t.
func Place(t *Topology, workers int) Placement {
	workers = max(workers, 1)
	var all []int
	var devs []Device
	if t != nil {
		all, devs = t.CPUs, t.Devices
	}
	def := Pool{GPU: -1, CPUs: slices.Clone(all), Workers: workers}
	if len(devs) == 0 {
		return Placement{Pools: []Pool{def}}
	}
	shares := apportion(workers, slices.Repeat([]int{1}, len(devs)))
	pools := make([]Pool, 0, len(devs)+1)
	for i, d := range devs {
		cpus := d.CPUs
		if len(cpus) == 0 {
			cpus = all
		}
		pools = append(pools, Pool{GPU: i, CPUs: slices.Clone(cpus), Workers: max(shares[i], 1)})
	}
	return Placement{Pools: append(pools, def)}
}

// apportion splits total into parts proportional to weights (all > 0) by
// largest remainder; earlier parts win ties. The parts sum to total.
func apportion(total int, weights []int) []int {
	sum := 0
	for _, w := range weights {
		sum += w
	}
	parts := make([]int, len(weights))
	rems := make([]int, len(weights))
	given := 0
	for i, w := range weights {
		parts[i] = total * w / sum
		rems[i] = total * w % sum
		given += parts[i]
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return rems[b] - rems[a] })
	for _, i := range order[:total-given] {
		parts[i]++
	}
	return parts
}

// PoolFor returns the index in p.Pools of the pool serving the GPU at
// position gpu in Topology.Devices; -1, or a GPU without a pool, gives the
// default pool. Only a zero Placement gives -1.
func (p Placement) PoolFor(gpu int) int {
	def := -1
	for i, pool := range p.Pools {
		if pool.GPU == gpu && gpu >= 0 {
			return i
		}
		if pool.GPU == -1 && def < 0 {
			def = i
		}
	}
	return def
}

// Route returns the index in p.Pools of the pool that serves a request
// whose "gpu" field is gpu: the default pool for "", else the pool of the
// GPU that t.FindGPU names. An unknown GPU is an error wrapping
// ErrUnknownGPU (InvalidArgument to the client).
func (p Placement) Route(t *Topology, gpu string) (int, error) {
	if gpu == "" {
		return p.PoolFor(-1), nil
	}
	dev, err := t.FindGPU(gpu)
	if err != nil {
		return -1, err
	}
	return p.PoolFor(dev), nil
}

// Run runs work on p.Workers goroutines (at least one), passing each its
// worker number, and returns when all have returned; the first error
// cancels the others' ctx and is returned. Workers of a GPU pool start by
// calling PinThread(p.CPUs), so each runs on its own OS thread on the CPUs
// next to the GPU, and the thread ends with the worker. The default pool
// (GPU -1) spans every CPU and is not pinned.
func (p Pool) Run(ctx context.Context, work func(ctx context.Context, worker int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	for i := range max(p.Workers, 1) {
		g.Go(func() error {
			if p.GPU >= 0 {
				if err := PinThread(p.CPUs); err != nil {
					return err
				}
			}
			return work(ctx, i)
		})
	}
	return g.Wait()
}
