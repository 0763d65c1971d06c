package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/loader"
	"github.com/loaderd/loaderd/service"
	"golang.org/x/sync/errgroup"
)

const datasetName = "bench"

// precomputePhase measures Loader.Precompute of one epoch (epoch 0) and of
// K fused epochs (1…K) into an emptied cache: an untimed warm-up of epoch 0
// first, then repeat timed runs of each. Epoch 0 stays cached afterwards,
// for the warm phase; epochs 1…K are evicted.
func precomputePhase(ctx context.Context, l *loader.Loader, k, workers, repeat int, progress func(string, ...any)) ([]Point, error) {
	single := []int{0}
	fused := make([]int, k)
	for i := range fused {
		fused[i] = i + 1
	}
	all := append(append([]int(nil), single...), fused...)
	if _, err := precomputeOnce(ctx, l, single); err != nil { // warm-up
		return nil, err
	}
	runs, cores := map[int][]float64{}, map[int][]float64{}
	var images = map[int]int64{}
	for range repeat {
		if _, err := l.Evict(ctx, datasetName, all); err != nil {
			return nil, fmt.Errorf("bench: precompute: evict: %w", err)
		}
		for _, epochs := range [][]int{single, fused} {
			sum, err := precomputeOnce(ctx, l, epochs)
			if err != nil {
				return nil, err
			}
			runs[len(epochs)] = append(runs[len(epochs)], sum.rate)
			cores[len(epochs)] = append(cores[len(epochs)], sum.cores)
			images[len(epochs)] = sum.computed
		}
	}
	if _, err := l.Evict(ctx, datasetName, fused); err != nil {
		return nil, fmt.Errorf("bench: precompute: evict: %w", err)
	}
	if err := checkCached(ctx, l, 0); err != nil {
		return nil, err
	}
	var points []Point
	for _, n := range []int{1, k} {
		s, c := summarize(runs[n]), summarize(cores[n]).Median
		points = append(points, Point{Workers: workers, Epochs: n, ImagesPerSec: s.Median, Min: s.Min, Max: s.Max,
			Runs: runs[n], Images: images[n], CPUCores: c})
		progress("precompute: epochs=%d: %.0f images/s [%.0f–%.0f], %.2f cores", n, s.Median, s.Min, s.Max, c)
	}
	return points, nil
}

// checkCached returns an error unless epoch is complete in l's cache, so
// that the warm phase measures serving, not computing.
func checkCached(ctx context.Context, l *loader.Loader, epoch int) error {
	st, err := l.CacheStatus(ctx, datasetName)
	if err != nil {
		return fmt.Errorf("bench: cache status: %w", err)
	}
	for _, d := range st.Datasets {
		for _, e := range d.Epochs {
			if e.Epoch == epoch && e.State == service.EpochComplete {
				return nil
			}
		}
	}
	return fmt.Errorf("bench: epoch %d is not complete in the cache after precompute: %+v", epoch, st)
}

type precomputed struct {
	computed int64
	rate     float64 // augmented samples per second
	cores    float64 // CPU seconds of the process per second
}

func precomputeOnce(ctx context.Context, l *loader.Loader, epochs []int) (precomputed, error) {
	start, cpu0 := time.Now(), processCPU()
	sum, err := l.Precompute(ctx, datasetName, epochs, func(service.PrecomputeProgress) error { return nil })
	d := time.Since(start)
	cores := (processCPU() - cpu0).Seconds() / d.Seconds()
	if err != nil {
		return precomputed{}, fmt.Errorf("bench: precompute %v: %w", epochs, err)
	}
	if sum.Computed == 0 {
		return precomputed{}, fmt.Errorf("bench: precompute %v: nothing computed (%d cached)", epochs, sum.Cached)
	}
	return precomputed{computed: sum.Computed, rate: rate(float64(sum.Computed), d), cores: cores}, nil
}

// warmPhase measures DoGet of the cached epoch 0 from addr with c
// concurrent clients for each c in clients. Client k of c fetches rank k of
// world size c (together one epoch), passes times in a row, each over its
// own connection, in the raw mode that counts bytes without building
// records. The figures are totals over the clients.
func warmPhase(ctx context.Context, addr string, clients []int, batchSize, passes, repeat int, progress func(string, ...any)) ([]Point, error) {
	var points []Point
	for _, c := range clients {
		conns := make([]*flightsvc.Client, 0, c)
		closeAll := func() {
			for _, cl := range conns {
				cl.Close()
			}
		}
		for range c {
			// The ordinary stream, even where the server is on this host.
			cl, err := flightsvc.Dial(ctx, addr, &flightsvc.ClientOptions{Transport: service.TransportFlight})
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("bench: warm: %w", err)
			}
			conns = append(conns, cl)
		}
		if _, err := fetchAll(ctx, conns, batchSize, 1); err != nil { // warm-up
			closeAll()
			return nil, err
		}
		var runs, gbs []float64
		var last flightsvc.FetchStats
		for range repeat {
			st, err := fetchAll(ctx, conns, batchSize, passes)
			if err != nil {
				closeAll()
				return nil, err
			}
			runs = append(runs, rate(float64(st.Rows), st.Elapsed))
			gbs = append(gbs, rate(float64(st.Bytes)/1e9, st.Elapsed))
			last = st
		}
		closeAll()
		s, g := summarize(runs), summarize(gbs)
		points = append(points, Point{Clients: c, ImagesPerSec: s.Median, GBPerSec: g.Median, Min: s.Min, Max: s.Max,
			Runs: runs, Images: last.Rows, Bytes: last.Bytes})
		progress("warm: clients=%d: %.0f images/s [%.0f–%.0f], %.2f GB/s", c, s.Median, s.Min, s.Max, g.Median)
	}
	return points, nil
}

// fetchAll runs every client at once, client k streaming rank k of
// len(conns) passes times, and returns the summed rows and bytes with the
// wall time from the start to the last client's end.
func fetchAll(ctx context.Context, conns []*flightsvc.Client, batchSize, passes int) (flightsvc.FetchStats, error) {
	stats := make([]flightsvc.FetchStats, len(conns))
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for k, cl := range conns {
		g.Go(func() error {
			req := service.Request{Dataset: datasetName, Epoch: 0, BatchSize: batchSize, Rank: k,
				WorldSize: len(conns), Shuffle: true}
			for range passes {
				st, err := cl.Fetch(gctx, req, nil)
				if err != nil {
					return fmt.Errorf("bench: warm: client %d of %d: %w", k, len(conns), err)
				}
				stats[k].Batches += st.Batches
				stats[k].Rows += st.Rows
				stats[k].Bytes += st.Bytes
			}
			return nil
		})
	}
	err := g.Wait()
	total := flightsvc.FetchStats{Elapsed: time.Since(start)}
	for _, st := range stats {
		total.Batches += st.Batches
		total.Rows += st.Rows
		total.Bytes += st.Bytes
	}
	return total, err
}
