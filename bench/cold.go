package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/loaderd/loaderd/augment"
	"golang.org/x/sync/errgroup"
)

// coldRun applies p to every file with workers goroutines sharing one
// counter, sample i of the run drawn from SampleRand(seed, epoch, i), and
// returns the images augmented (undecodable files are skipped) and the
// time taken.
func coldRun(ctx context.Context, p *augment.Pipeline, files [][]byte, workers int, seed uint64, epoch int) (int64, time.Duration, error) {
	var next, done atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range workers {
		g.Go(func() error {
			dst := make([]byte, p.RowBytes())
			for {
				i := next.Add(1) - 1
				if i >= int64(len(files)) {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				err := p.Apply(dst, files[i], augment.SampleRand(seed, epoch, i))
				if errors.Is(err, augment.ErrDecode) {
					continue
				} else if err != nil {
					return fmt.Errorf("bench: cold sample %d: %w", i, err)
				}
				done.Add(1)
			}
		})
	}
	err := g.Wait()
	return done.Load(), time.Since(start), err
}

// coldPhase measures the cold pipeline at 1…maxWorkers workers: per worker
// count an untimed warm-up over a few images, then repeat timed runs over
// every file (run r uses epoch r, so runs augment differently).
func coldPhase(ctx context.Context, p *augment.Pipeline, files [][]byte, maxWorkers, repeat int, seed uint64, progress func(string, ...any)) ([]Point, error) {
	var points []Point
	for w := 1; w <= maxWorkers; w++ {
		warm := files[:min(len(files), 4*w)]
		if _, _, err := coldRun(ctx, p, warm, w, seed, repeat); err != nil {
			return nil, err
		}
		runs := make([]float64, 0, repeat)
		cores := make([]float64, 0, repeat)
		var images int64
		for r := range repeat {
			cpu0 := processCPU()
			n, d, err := coldRun(ctx, p, files, w, seed, r)
			if err != nil {
				return nil, err
			}
			if n == 0 {
				return nil, fmt.Errorf("bench: cold: %w: no image of the dataset decodes", augment.ErrDecode)
			}
			images = n
			runs = append(runs, rate(float64(n), d))
			cores = append(cores, (processCPU()-cpu0).Seconds()/d.Seconds())
		}
		s := summarize(runs)
		points = append(points, Point{Workers: w, ImagesPerSec: s.Median, Min: s.Min, Max: s.Max, Runs: runs, Images: images,
			CPUCores: summarize(cores).Median})
		progress("cold: workers=%d: %.0f images/s [%.0f–%.0f], %.2f cores", w, s.Median, s.Min, s.Max, summarize(cores).Median)
	}
	return points, nil
}

// processCPU returns the user and system CPU time this process has used
// (every thread), or 0 where getrusage fails.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
