// Package workers runs the loader's tasks on a fixed set of worker
// goroutines: one group per placement pool (gpu.Place), the workers of a
// GPU's pool pinned to that GPU's CPUs, stream tasks ahead of background
// tasks. Submitting blocks until a worker takes the task, so the work in
// flight is bounded by the workers, never by the dataset.
package workers

import (
	"context"
	"log/slog"
	"sync"

	"github.com/loaderd/loaderd/gpu"
)

// A Task is one unit of work for a worker: compute a row, or one sample's
// rows of several epochs. It writes into a fixed slot, so what it produces
// never depends on which worker runs it or when.
type Task func()

// A Scheduler owns the worker goroutines: one group per placement pool,
// the workers of a GPU's pool pinned to that GPU's CPUs. A stream's tasks
// go to its pool (the default pool when it names no GPU); precompute and
// prefetch tasks go to the default pool's workers, which take them only
// when no stream task waits. Queues are unbuffered: a submitter waits for
// a worker, so the work in flight is bounded by the worker count, never by
// the dataset.
type Scheduler struct {
	log   *slog.Logger
	pools []*workerPool
	def   int       // the default pool
	low   chan Task // precompute and prefetch tasks

	mu      sync.Mutex     // guards started and stopped
	started bool           // the workers run
	stopped bool           // Stop was called; done is closed
	done    chan struct{}  // closed by Stop: workers and submitters return
	wg      sync.WaitGroup // the workers
}

// A workerPool is the workers of one placement pool.
type workerPool struct {
	cpus    []int     // nil: no pinning
	workers int       // goroutines
	high    chan Task // stream tasks of this pool
	low     chan Task // background tasks; nil unless the default pool
}

// New plans the workers of pl (one default pool of workers when it has
// none); pin enables CPU pinning of GPU pools. It starts no goroutine: the
// workers start with the first Submit and end in Stop.
func New(pl gpu.Placement, workers int, pin bool, log *slog.Logger) *Scheduler {
	s := &Scheduler{log: log, def: pl.PoolFor(-1), low: make(chan Task), done: make(chan struct{})}
	for _, p := range pl.Pools {
		wp := &workerPool{workers: max(1, p.Workers), high: make(chan Task)}
		if pin && p.GPU >= 0 {
			wp.cpus = append([]int(nil), p.CPUs...)
		}
		s.pools = append(s.pools, wp)
	}
	if s.def < 0 {
		s.pools = append(s.pools, &workerPool{workers: max(1, workers), high: make(chan Task)})
		s.def = len(s.pools) - 1
	}
	s.pools[s.def].low = s.low
	return s
}

// start launches the workers once; it reports false after Stop.
func (s *Scheduler) start() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	if s.started {
		return true
	}
	s.started = true
	for _, p := range s.pools {
		for range p.workers {
			s.wg.Add(1)
			go s.work(p)
		}
	}
	return true
}

// work runs tasks until Stop. A pinned worker keeps its OS thread locked
// (gpu.PinThread) until it exits, so the thread ends with it and no other
// goroutine inherits its affinity.
func (s *Scheduler) work(p *workerPool) {
	defer s.wg.Done()
	if len(p.cpus) > 0 {
		if err := gpu.PinThread(p.cpus); err != nil {
			s.log.Warn("workers: cannot pin worker", "cpus", p.cpus, "err", err)
		}
	}
	for {
		select { // stream tasks first
		case t := <-p.high:
			t()
			continue
		default:
		}
		select {
		case t := <-p.high:
			t()
		case t := <-p.low: // nil channel unless the default pool
			t()
		case <-s.done:
			return
		}
	}
}

// Submit hands t to a worker: of pool (-1: the default pool) ahead of
// background work when high, else as background work. It returns false
// without running t when ctx ends or the scheduler stops first.
func (s *Scheduler) Submit(ctx context.Context, pool int, high bool, t Task) bool {
	if !s.start() {
		return false
	}
	q := s.low
	if high {
		if pool < 0 || pool >= len(s.pools) {
			pool = s.def
		}
		q = s.pools[pool].high
	}
	select {
	case q <- t:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// Stop ends the workers after their current task and waits for them. Submit
// reports false from then on.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.done)
	}
	s.mu.Unlock()
	s.wg.Wait()
}
