package gpu

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// PinThread locks the calling goroutine to its OS thread
// (runtime.LockOSThread) and restricts that thread to cpus
// (sched_setaffinity). It never unlocks: call it first thing in a goroutine
// that exits when its work is done; the runtime then ends the pinned thread
// instead of reusing it, so the narrowed CPU mask never leaks to other
// goroutines. Pool.Run does exactly that. An empty or out-of-range set, or
// one the kernel refuses (no allowed CPU in it), is an error wrapping
// ErrBadCPUSet; the goroutine stays locked either way.
func PinThread(cpus []int) error {
	runtime.LockOSThread()
	if len(cpus) == 0 {
		return fmt.Errorf("%w: empty", ErrBadCPUSet)
	}
	var set unix.CPUSet
	for _, c := range cpus {
		if c < 0 || c >= maxCPU {
			return fmt.Errorf("%w: CPU %d", ErrBadCPUSet, c)
		}
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("%w: pin to %s: %w", ErrBadCPUSet, FormatCPUList(cpus), err)
	}
	return nil
}

// allowedCPUs returns the CPUs this process may run on, sorted.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("gpu: sched_getaffinity: %w", err)
	}
	var cpus []int
	for c := range maxCPU {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
