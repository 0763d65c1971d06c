package gpu

import (
	"errors"
	"reflect"
	"testing"
)

// twoSockets is a 16-CPU host with GPUs on the given nodes (0: 0-7, 1: 8-15).
func twoSockets(gpuNodes ...int) *Topology {
	t := &Topology{CPUs: seq(0, 15), Nodes: []NUMANode{{ID: 0, CPUs: seq(0, 7)}, {ID: 1, CPUs: seq(8, 15)}}}
	for i, n := range gpuNodes {
		t.Devices = append(t.Devices, Device{Index: i, NUMANode: n, CPUs: t.Nodes[n].CPUs})
	}
	return t
}

func TestPlace(t *testing.T) {
	noAffinity := twoSockets(0, 1)
	noAffinity.Devices[1].CPUs = nil
	tests := []struct {
		name    string
		topo    *Topology
		workers int
		want    []Pool
	}{
		{
			name: "no GPU: one default pool", topo: twoSockets(), workers: 6,
			want: []Pool{{GPU: -1, CPUs: seq(0, 15), Workers: 6}},
		},
		{
			name: "nil topology", topo: nil, workers: 2,
			want: []Pool{{GPU: -1, Workers: 2}},
		},
		{
			name: "zero workers mean one", topo: twoSockets(), workers: 0,
			want: []Pool{{GPU: -1, CPUs: seq(0, 15), Workers: 1}},
		},
		{
			name: "one GPU gets its node's CPUs and all workers", topo: twoSockets(1), workers: 4,
			want: []Pool{
				{GPU: 0, CPUs: seq(8, 15), Workers: 4},
				{GPU: -1, CPUs: seq(0, 15), Workers: 4},
			},
		},
		{
			name: "eight GPUs split over two nodes", topo: twoSockets(0, 0, 0, 0, 1, 1, 1, 1), workers: 16,
			want: []Pool{
				{GPU: 0, CPUs: seq(0, 7), Workers: 2}, {GPU: 1, CPUs: seq(0, 7), Workers: 2},
				{GPU: 2, CPUs: seq(0, 7), Workers: 2}, {GPU: 3, CPUs: seq(0, 7), Workers: 2},
				{GPU: 4, CPUs: seq(8, 15), Workers: 2}, {GPU: 5, CPUs: seq(8, 15), Workers: 2},
				{GPU: 6, CPUs: seq(8, 15), Workers: 2}, {GPU: 7, CPUs: seq(8, 15), Workers: 2},
				{GPU: -1, CPUs: seq(0, 15), Workers: 16},
			},
		},
		{
			name: "fewer workers than GPUs: one each", topo: twoSockets(0, 0, 1, 1), workers: 2,
			want: []Pool{
				{GPU: 0, CPUs: seq(0, 7), Workers: 1}, {GPU: 1, CPUs: seq(0, 7), Workers: 1},
				{GPU: 2, CPUs: seq(8, 15), Workers: 1}, {GPU: 3, CPUs: seq(8, 15), Workers: 1},
				{GPU: -1, CPUs: seq(0, 15), Workers: 2},
			},
		},
		{
			name: "three GPUs share node 0, one has node 1: equal shares", topo: twoSockets(0, 1, 0, 0), workers: 8,
			want: []Pool{
				{GPU: 0, CPUs: seq(0, 7), Workers: 2}, {GPU: 1, CPUs: seq(8, 15), Workers: 2},
				{GPU: 2, CPUs: seq(0, 7), Workers: 2}, {GPU: 3, CPUs: seq(0, 7), Workers: 2},
				{GPU: -1, CPUs: seq(0, 15), Workers: 8},
			},
		},
		{
			name: "remainder to the first GPUs", topo: twoSockets(0, 1, 1), workers: 7,
			want: []Pool{
				{GPU: 0, CPUs: seq(0, 7), Workers: 3}, {GPU: 1, CPUs: seq(8, 15), Workers: 2},
				{GPU: 2, CPUs: seq(8, 15), Workers: 2},
				{GPU: -1, CPUs: seq(0, 15), Workers: 7},
			},
		},
		{
			name: "a GPU without CPUs gets all of them", topo: noAffinity, workers: 3,
			want: []Pool{
				{GPU: 0, CPUs: seq(0, 7), Workers: 2}, {GPU: 1, CPUs: seq(0, 15), Workers: 1},
				{GPU: -1, CPUs: seq(0, 15), Workers: 3},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Place(tc.topo, tc.workers)
			if !reflect.DeepEqual(got.Pools, tc.want) {
				t.Errorf("Place(%d workers) =\n%+v\nwant\n%+v", tc.workers, got.Pools, tc.want)
			}
			for i := range got.Pools {
				if got.PoolFor(got.Pools[i].GPU) != i {
					t.Errorf("PoolFor(%d) = %d, want %d", got.Pools[i].GPU, got.PoolFor(got.Pools[i].GPU), i)
				}
			}
		})
	}
}

func TestPlaceDoesNotAlias(t *testing.T) {
	topo := twoSockets(0)
	p := Place(topo, 2)
	p.Pools[0].CPUs[0] = 99
	p.Pools[1].CPUs[0] = 99
	if topo.CPUs[0] != 0 || topo.Devices[0].CPUs[0] != 0 {
		t.Errorf("changing a pool's CPUs changed the topology: %v %v", topo.CPUs, topo.Devices[0].CPUs)
	}
}

func TestPoolFor(t *testing.T) {
	p := Place(twoSockets(0, 1), 4) // pools: GPU 0, GPU 1, default
	tests := []struct {
		name string
		gpu  int
		want int
	}{
		{name: "GPU 0", gpu: 0, want: 0},
		{name: "GPU 1", gpu: 1, want: 1},
		{name: "default", gpu: -1, want: 2},
		{name: "GPU without pool", gpu: 5, want: 2},
		{name: "other negative", gpu: -3, want: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.PoolFor(tc.gpu); got != tc.want {
				t.Errorf("PoolFor(%d) = %d, want %d", tc.gpu, got, tc.want)
			}
		})
	}
	if got := (Placement{}).PoolFor(0); got != -1 {
		t.Errorf("zero Placement PoolFor(0) = %d, want -1", got)
	}
}

func TestApportion(t *testing.T) {
	tests := []struct {
		name    string
		total   int
		weights []int
		want    []int
	}{
		{name: "even", total: 8, weights: []int{1, 1}, want: []int{4, 4}},
		{name: "remainder to the first", total: 5, weights: []int{1, 1}, want: []int{3, 2}},
		{name: "largest remainder", total: 10, weights: []int{1, 2, 4}, want: []int{1, 3, 6}},
		{name: "zero total", total: 0, weights: []int{3, 1}, want: []int{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := apportion(tc.total, tc.weights); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("apportion(%d, %v) = %v, want %v", tc.total, tc.weights, got, tc.want)
			}
		})
	}
}

func TestRoute(t *testing.T) {
	topo := twoSockets(0, 1)
	topo.Devices[1].UUID = "GPU-1111"
	p := Place(topo, 4) // pools: GPU 0, GPU 1, default
	tests := []struct {
		name    string
		gpu     string
		want    int
		wantErr error
	}{
		{name: "no gpu field", gpu: "", want: 2},
		{name: "index", gpu: "0", want: 0},
		{name: "UUID", gpu: "gpu-1111", want: 1},
		{name: "unknown", gpu: "7", want: -1, wantErr: ErrUnknownGPU},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Route(topo, tc.gpu)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("Route(%q) = %d, %v; want %d, %v", tc.gpu, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
