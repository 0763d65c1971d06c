package gpu

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// processCPU returns the CPU time this process has used, all threads.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// imageWork is a CPU-bound stand-in for augmenting one 64×64 RGB image: a
// few passes of a 3-tap blur over a private buffer (no shared memory, so
// pinning is measured, not cache sharing).
func imageWork(buf []byte) byte {
	for range 4 {
		for i := 1; i < len(buf)-1; i++ {
			buf[i] = byte((int(buf[i-1]) + 2*int(buf[i]) + int(buf[i+1])) >> 2)
		}
	}
	return buf[len(buf)/2]
}

// BenchmarkPool runs the same CPU-bound work on a pool of workers that are
// unpinned (the default pool), pinned to every allowed CPU (the cost of
// LockOSThread plus sched_setaffinity), and pinned to a single CPU (what a
// GPU pool costs when its node has fewer CPUs than workers). Each b.Loop
// iteration starts the pool, so thread creation is in the figure.
// images/s is wall-clock throughput (it moves with whatever else runs on
// the machine); cpu-ns/image is the process's CPU time per image, which
// shows the cost of the work itself on its CPUs.
func BenchmarkPool(b *testing.B) {
	allowed, err := allowedCPUs()
	if err != nil {
		b.Fatal(err)
	}
	const perWorker = 64 // images per worker per iteration
	workers := len(allowed)
	cases := []struct {
		name string
		pool Pool
	}{
		{name: "unpinned", pool: Pool{GPU: -1, CPUs: allowed, Workers: workers}},
		{name: "pinned-all", pool: Pool{GPU: 0, CPUs: allowed, Workers: workers}},
		{name: "pinned-one-cpu", pool: Pool{GPU: 0, CPUs: allowed[:1], Workers: workers}},
	}
	for _, bc := range cases {
		b.Run(fmt.Sprintf("%s/workers=%d", bc.name, workers), func(b *testing.B) {
			images := 0
			cpu0 := processCPU(b)
			for b.Loop() {
				err := bc.pool.Run(context.Background(), func(ctx context.Context, worker int) error {
					buf := make([]byte, 64*64*3)
					for i := range buf {
						buf[i] = byte(i * worker)
					}
					for range perWorker {
						imageWork(buf)
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				images += perWorker * workers
			}
			b.ReportMetric(float64(images)/b.Elapsed().Seconds(), "images/s")
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(images), "cpu-ns/image")
		})
	}
}

// BenchmarkPinThread measures what pinning a worker costs once: a goroutine
// that locks its thread, pins it and exits (the runtime then ends the
// thread) against one that only runs.
func BenchmarkPinThread(b *testing.B) {
	allowed, err := allowedCPUs()
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		pin  bool
	}{
		{name: "plain-goroutine", pin: false},
		{name: "lock-pin-exit", pin: true},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				errc := make(chan error, 1)
				go func() {
					if bc.pin {
						errc <- PinThread(allowed[:1])
						return
					}
					errc <- nil
				}()
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
