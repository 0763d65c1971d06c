//go:build !linux

package gpu

import (
	"errors"
	"fmt"
	"runtime"
)

// errPinUnsupported reports that this OS cannot pin threads to CPUs.
var errPinUnsupported = errors.New("thread CPU affinity is only supported on Linux")

// PinThread locks the calling goroutine to its OS thread; pinning it to
// CPUs is only supported on Linux, so it returns an error wrapping
// ErrBadCPUSet here.
func PinThread(cpus []int) error {
	runtime.LockOSThread()
	return fmt.Errorf("%w: %w", ErrBadCPUSet, errPinUnsupported)
}

func allowedCPUs() ([]int, error) { return nil, errPinUnsupported }
