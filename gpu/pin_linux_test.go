package gpu

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// threadCPUs returns the calling thread's CPU affinity.
func threadCPUs(t *testing.T) []int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	var cpus []int
	for c := range maxCPU {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}

func TestPinThread(t *testing.T) {
	allowed, err := allowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	last := allowed[len(allowed)-1]
	tests := []struct {
		name    string
		cpus    []int
		want    []int
		wantErr bool
	}{
		{name: "one CPU", cpus: []int{last}, want: []int{last}},
		{name: "every allowed CPU", cpus: allowed, want: allowed},
		{name: "empty", cpus: nil, wantErr: true},
		{name: "negative", cpus: []int{-1}, wantErr: true},
		{name: "past maxCPU", cpus: []int{maxCPU}, wantErr: true},
		{name: "no such CPU", cpus: []int{maxCPU - 1}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			var err error
			done := make(chan struct{})
			go func() { // a goroutine of its own: its pinned thread ends with it
				defer close(done)
				if err = PinThread(tc.cpus); err == nil {
					got = threadCPUs(t)
				}
			}()
			<-done
			if tc.wantErr {
				if !errors.Is(err, ErrBadCPUSet) {
					t.Errorf("PinThread(%v) = %v, want ErrBadCPUSet", tc.cpus, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("PinThread(%v): %v; thread runs on %v, want %v", tc.cpus, err, got, tc.want)
			}
		})
	}
	if got, _ := allowedCPUs(); !reflect.DeepEqual(got, allowed) {
		t.Errorf("after pinned goroutines ended, this thread runs on %v, want %v", got, allowed)
	}
}

func TestPoolRun(t *testing.T) {
	allowed, err := allowedCPUs()
	if err != nil {
		t.Fatal(err)
	}
	last := allowed[len(allowed)-1]
	tests := []struct {
		name string
		pool Pool
		want []int // every worker's affinity
	}{
		{name: "GPU pool is pinned", pool: Pool{GPU: 0, CPUs: []int{last}, Workers: 3}, want: []int{last}},
		{name: "default pool is not", pool: Pool{GPU: -1, CPUs: []int{last}, Workers: 2}, want: allowed},
		{name: "zero workers run one", pool: Pool{GPU: 1, CPUs: allowed}, want: allowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			seen := map[int][]int{}
			err := tc.pool.Run(t.Context(), func(ctx context.Context, worker int) error {
				cpus := threadCPUs(t)
				mu.Lock()
				defer mu.Unlock()
				seen[worker] = cpus
				return nil
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if len(seen) != max(tc.pool.Workers, 1) {
				t.Errorf("%d workers ran, want %d", len(seen), max(tc.pool.Workers, 1))
			}
			for w, cpus := range seen {
				if !reflect.DeepEqual(cpus, tc.want) {
					t.Errorf("worker %d ran on %v, want %v", w, cpus, tc.want)
				}
			}
		})
	}
}

func TestPoolRunErrors(t *testing.T) {
	boom := errors.New("boom")
	err := Pool{GPU: -1, Workers: 3}.Run(t.Context(), func(ctx context.Context, worker int) error {
		if worker == 1 {
			return boom
		}
		<-ctx.Done() // the others stop when worker 1 fails
		return ctx.Err()
	})
	if !errors.Is(err, boom) {
		t.Errorf("Run = %v, want boom", err)
	}
	err = Pool{GPU: 0, CPUs: []int{maxCPU - 1}, Workers: 2}.Run(t.Context(), func(context.Context, int) error {
		t.Error("worker ran although its pinning failed")
		return nil
	})
	if !errors.Is(err, ErrBadCPUSet) {
		t.Errorf("Run on a missing CPU = %v, want ErrBadCPUSet", err)
	}
}
