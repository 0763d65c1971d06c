package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/loader"
	"github.com/loaderd/loaderd/shardcache"
	"golang.org/x/sync/errgroup"
)

// Run measures, on one dataset: the machine's limits, the cold pipeline at
// 1…MaxWorkers workers, precompute of 1 and K fused epochs, warm Flight
// DoGet at each client count, and the peers asked for. Temporary data
// (generated images, subset, cache) lives in a temp dir removed on return.
// With OutDir set it writes the JSON, the PNG, the table and the peers'
// sample images there. A peer that cannot run is recorded in its
// PeerResult.Error (see Report.PeerErr), not returned.
func Run(ctx context.Context, opts *Options) (*Report, error) {
	o := opts.withDefaults()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for i, name := range o.Peers {
		if _, ok := findPeerSpec(name); !ok || slices.Contains(o.Peers[:i], name) {
			return nil, fmt.Errorf("%w: peers %v (want each of %s at most once)", ErrOptions, o.Peers, strings.Join(PeerNames(), ", "))
		}
	}
	for _, c := range o.Clients {
		if c <= 0 {
			return nil, fmt.Errorf("%w: clients %v", ErrOptions, o.Clients)
		}
	}
	start := time.Now()
	progress := func(format string, args ...any) {
		o.Logger.Debug(fmt.Sprintf(format, args...))
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, format+"\n", args...)
		}
	}
	p, err := augment.ParsePipeline(o.Pipeline, &augment.PipelineOptions{Decoder: o.Decoder})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	tmp, err := os.MkdirTemp("", "loaderd-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(tmp)

	r := &Report{Machine: describeMachine(p.Decoder(), start), Repeat: o.Repeat, Options: Settings{
		MaxWorkers: o.MaxWorkers, Epochs: o.Epochs, Clients: o.Clients, BatchSize: o.BatchSize, MaxImages: o.MaxImages,
		TransferBytes: o.TransferBytes, Seed: o.Seed, Peers: o.Peers}}
	if len(o.Peers) > 0 {
		r.Options.PeerEpochs = o.PeerEpochs
	}
	data, err := prepareData(ctx, &o, tmp)
	if err != nil {
		return nil, err
	}
	r.Dataset = data.Info
	r.Dataset.Pipeline, r.Dataset.RowBytes = p.String(), p.RowBytes()
	progress("dataset: %s, %d images in %s", r.Dataset.Source, r.Dataset.Images, data.Dir)

	if r.Limits, err = measureLimits(ctx, &o, p.RowBytes(), progress); err != nil {
		return nil, err
	}
	if r.Cold, err = coldPhase(ctx, p, data.Files, o.MaxWorkers, o.Repeat, o.Seed, progress); err != nil {
		return nil, err
	}
	if err := cachedPhases(ctx, &o, tmp, p, data, r, progress); err != nil {
		return nil, err
	}
	r.Local = localPhase(ctx, &o, tmp, data.Dir, p.RowBytes(), data.Set.Len(), progress)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if len(o.Peers) > 0 {
		if r.Peers, err = runPeers(ctx, &o, tmp, data.Dir, progress); err != nil {
			return nil, err
		}
	}
	r.Ratios = r.computeRatios()
	r.Machine.LoadEnd = loadAverage()
	r.Seconds = time.Since(start).Seconds()
	if o.OutDir != "" {
		if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		r.JSONPath, r.PlotPath = filepath.Join(o.OutDir, JSONName), filepath.Join(o.OutDir, PlotName)
		r.TablePath = filepath.Join(o.OutDir, TableName)
		if err := r.WriteJSON(r.JSONPath); err != nil {
			return nil, err
		}
		if err := r.WritePlot(r.PlotPath); err != nil {
			return nil, err
		}
		var table bytes.Buffer
		if err := r.WriteTable(&table); err != nil {
			return nil, err
		}
		if err := os.WriteFile(r.TablePath, table.Bytes(), 0o644); err != nil {
			return nil, fmt.Errorf("bench: write table: %w", err)
		}
	}
	return r, nil
}

func measureLimits(ctx context.Context, o *Options, rowBytes int, progress func(string, ...any)) (Limits, error) {
	var l Limits
	var err error
	if l.Memcpy, err = measureMemcpy(ctx, 4*o.TransferBytes, o.Repeat); err != nil {
		return l, err
	}
	progress("limits: memcpy %.2f GB/s", l.Memcpy.GBPerSec)
	for _, streams := range []int{1, 2} {
		lb, err := measureLoopback(ctx, streams, o.TransferBytes/int64(streams), o.Repeat)
		if err != nil {
			return l, err
		}
		l.Loopback = append(l.Loopback, lb)
		progress("limits: loopback TCP, streams=%d: %.2f GB/s", streams, lb.GBPerSec)
	}
	for _, r := range append([]*Rate{&l.Memcpy}, ptrs(l.Loopback)...) {
		r.SamplesPerSec = r.GBPerSec * 1e9 / float64(rowBytes)
	}
	return l, nil
}

func ptrs(rs []Rate) []*Rate {
	out := make([]*Rate, len(rs))
	for i := range rs {
		out[i] = &rs[i]
	}
	return out
}

// cachedPhases runs the precompute and warm phases over one loader and
// cache in tmp, with a Flight server on 127.0.0.1:0 for the warm one.
func cachedPhases(ctx context.Context, o *Options, tmp string, p *augment.Pipeline, data *benchData, r *Report, progress func(string, ...any)) (err error) {
	cache, err := shardcache.Open(filepath.Join(tmp, "cache"), &shardcache.Options{Logger: o.Logger})
	if err != nil {
		return fmt.Errorf("bench: cache: %w", err)
	}
	defer func() {
		if cerr := cache.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("bench: cache: %w", cerr)
		}
	}()
	l, err := loader.New(ctx, &loader.Options{
		Datasets: []loader.DatasetSpec{{Name: datasetName, Path: data.Dir}},
		Pipeline: p, Seed: o.Seed, Cache: cache, Workers: o.MaxWorkers, Logger: o.Logger,
	})
	if err != nil {
		return fmt.Errorf("bench: loader: %w", err)
	}
	defer l.Close()

	key := make([]byte, 32)
	rand.Read(key)
	srv, err := flightsvc.New(&flightsvc.Options{Source: l, Actions: l, TicketKey: key, Logger: o.Logger,
		DrainTimeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("bench: flight: %w", err)
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: flight: %w", err)
	}

	g, gctx := errgroup.WithContext(ctx)
	bg, stop := context.WithCancel(gctx)
	g.Go(func() error {
		if err := l.Run(bg); err != nil && bg.Err() == nil {
			return fmt.Errorf("bench: loader: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := srv.Serve(bg, lis); err != nil && bg.Err() == nil {
			return fmt.Errorf("bench: flight: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		defer stop()
		var err error
		if r.Precompute, err = precomputePhase(gctx, l, o.Epochs, o.MaxWorkers, o.Repeat, progress); err != nil {
			return err
		}
		epochBytes := int64(data.Set.Len()) * int64(p.RowBytes())
		passes := int(min(1000, max(1, (o.TransferBytes+epochBytes-1)/epochBytes)))
		r.Warm, err = warmPhase(gctx, lis.Addr().String(), o.Clients, o.BatchSize, passes, o.Repeat, progress)
		if err != nil || o.Python == "" {
			return err
		}
		r.Python, err = pythonPhase(gctx, o, tmp, lis.Addr().String(), passes, progress)
		return err
	})
	return g.Wait()
}

func describeMachine(decoder string, start time.Time) Machine {
	return Machine{CPU: cpuModel(), Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Decoder: decoder,
		Time: start.UTC().Format(time.RFC3339), LoadStart: loadAverage()}
}

// loadAverage returns the 1-minute load average, or 0 where unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 0
	}
	return v
}

// cpuModel returns the first "model name" of /proc/cpuinfo, or "".
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
