package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/service"
)

// A LocalResult holds the figures of same-node readers (SPEC §9), taken
// side by side against one `loaderd serve` process on the bench's cache:
// the ordinary stream (Go client, raw mode), 1…N local readers (Go
// clients reading the cache in place, each gathering its batches into one
// buffer), the server process's CPU per GB on both paths, and the page
// cache's footprint of readers that each read the whole epoch.
type LocalResult struct {
	// Flight is the ordinary stream over loopback TCP, one client.
	Flight Point `json:"flight"`
	// Readers are the local readers, per count; reader k of c reads rank
	// k of world size c. GBPerSec counts image bytes gathered.
	Readers []Point `json:"readers"`
	// Server CPU seconds (user + system, all threads) per GB of images
	// delivered, medians over the repeats: the ordinary stream's (one
	// client) and the local path's (one reader).
	FlightServerCPUPerGB float64 `json:"flight_server_cpu_s_per_gb"`
	LocalServerCPUPerGB  float64 `json:"local_server_cpu_s_per_gb"`
	// Footprint is measured while Footprint.Readers readers, each reading
	// the whole epoch at once, all held their last batch.
	Footprint Footprint `json:"footprint"`
	Error     string    `json:"error,omitempty"` // why there are no figures
}

// A Footprint is what Readers concurrent readers of one cached epoch
// cost in memory.
type Footprint struct {
	Readers    int   `json:"readers"`
	EpochBytes int64 `json:"epoch_bytes"` // the epoch's shard files
	// PageCacheBytes of those files were in the page cache (mincore): the
	// one copy every reader reads from.
	PageCacheBytes int64 `json:"page_cache_bytes"`
	// ReaderBytes is the memory the readers held of their own between them
	// (growth of the live Go heap): their batch buffers, BatchBytes each,
	// not a copy of the epoch each.
	ReaderBytes int64 `json:"reader_bytes"`
	BatchBytes  int64 `json:"batch_bytes"` // one batch's images
}

// localPhase measures LocalResult against a `loaderd serve` of the cache
// in tmp (epoch 0 precomputed there by the cached phases) that
// o.ServeCommand starts.
func localPhase(ctx context.Context, o *Options, tmp, dataDir string, rowBytes, images int, progress func(string, ...any)) *LocalResult {
	res := &LocalResult{}
	if o.ServeCommand == nil {
		res.Error = "not measured: no loaderd binary to serve from (Options.ServeCommand; `loaderd bench` sets it)"
		return res
	}
	if err := localRun(ctx, o, tmp, dataDir, rowBytes, images, res, progress); err != nil {
		res.Error = err.Error()
		progress("local: not measured: %v", err)
	}
	return res
}

// servedAt matches the address in serve's "loaderd serving" log line.
var servedAt = regexp.MustCompile(`location=grpc://(\S+)`)

func localRun(ctx context.Context, o *Options, tmp, dataDir string, rowBytes, images int, res *LocalResult, progress func(string, ...any)) error {
	cache := filepath.Join(tmp, "cache")
	decoder := o.Decoder
	if decoder == "" {
		decoder = "auto"
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	cmd := o.ServeCommand("serve", "--data", datasetName+"="+dataDir, "--pipeline", o.Pipeline, "--decoder", decoder,
		"--seed", strconv.FormatUint(o.Seed, 10), "--cache-dir", cache, "--listen", "127.0.0.1:0",
		"--prefetch-epochs", "0", "--workers", strconv.Itoa(o.MaxWorkers), "--log-level", "info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("bench: local: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bench: local: start loaderd serve: %w", err)
	}
	waited := make(chan error, 1)
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
	}()
	addrc := make(chan string, 1)
	var logTail strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logTail.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := servedAt.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrc <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		waited <- cmd.Wait()
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("bench: local: loaderd serve did not start within 2 minutes")
	case <-sctx.Done():
		return fmt.Errorf("bench: local: %w", sctx.Err())
	}
	pid := cmd.Process.Pid
	progress("local: loaderd serve (pid %d) at %s", pid, addr)

	ctl, err := flightsvc.Dial(ctx, addr, &flightsvc.ClientOptions{Transport: service.TransportFlight})
	if err != nil {
		return fmt.Errorf("bench: local: %w", err)
	}
	defer ctl.Close()
	// The cached phases left epoch 0 in the cache: this only checks it.
	if _, err := ctl.Action(ctx, flightsvc.ActionPrecompute, []byte(`{"dataset":"`+datasetName+`","epochs":[0]}`)); err != nil {
		logMu.Lock()
		defer logMu.Unlock()
		return fmt.Errorf("bench: local: precompute on loaderd serve: %w\n%s", err, tail(logTail.String(), 1000))
	}

	epochBytes := int64(images) * int64(rowBytes)
	passes := int(min(1000, max(1, (o.TransferBytes+epochBytes-1)/epochBytes)))
	measure := func(transport string, clients int) (Point, float64, error) {
		conns := make([]*flightsvc.Client, 0, clients)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range clients {
			c, err := flightsvc.Dial(ctx, addr, &flightsvc.ClientOptions{Transport: transport})
			if err != nil {
				return Point{}, 0, fmt.Errorf("bench: local: %w", err)
			}
			conns = append(conns, c)
		}
		if st, err := fetchAll(ctx, conns, o.BatchSize, 1); err != nil { // warm-up
			return Point{}, 0, err
		} else if st.Rows == 0 {
			return Point{}, 0, fmt.Errorf("bench: local: %s: no rows", transport)
		}
		var runs, gbs, cpus []float64
		var last flightsvc.FetchStats
		for range o.Repeat {
			c0, err := serverCPU(pid)
			if err != nil {
				return Point{}, 0, err
			}
			st, err := fetchAll(ctx, conns, o.BatchSize, passes)
			if err != nil {
				return Point{}, 0, err
			}
			c1, err := serverCPU(pid)
			if err != nil {
				return Point{}, 0, err
			}
			gb := float64(st.Rows) * float64(rowBytes) / 1e9
			runs = append(runs, rate(float64(st.Rows), st.Elapsed))
			gbs = append(gbs, rate(gb, st.Elapsed))
			cpus = append(cpus, (c1-c0)/gb)
			last = st
		}
		s := summarize(runs)
		return Point{Clients: clients, ImagesPerSec: s.Median, GBPerSec: summarize(gbs).Median, Min: s.Min, Max: s.Max,
			Runs: runs, Images: last.Rows, Bytes: last.Rows * int64(rowBytes)}, summarize(cpus).Median, nil
	}

	if res.Flight, res.FlightServerCPUPerGB, err = measure(service.TransportFlight, 1); err != nil {
		return err
	}
	progress("local: the ordinary stream, 1 client: %.0f images/s, %.2f GB/s, server %.3f CPU-s/GB",
		res.Flight.ImagesPerSec, res.Flight.GBPerSec, res.FlightServerCPUPerGB)
	for _, c := range o.LocalReaders {
		p, cpu, err := measure(service.TransportLocal, c)
		if err != nil {
			return err
		}
		if c == 1 {
			res.LocalServerCPUPerGB = cpu
		}
		res.Readers = append(res.Readers, p)
		progress("local: readers=%d: %.0f images/s [%.0f–%.0f], %.2f GB/s, server %.3f CPU-s/GB",
			c, p.ImagesPerSec, p.Min, p.Max, p.GBPerSec, cpu)
	}
	if res.Footprint, err = footprint(ctx, addr, cache, o.BatchSize, rowBytes, images, max(4, slicesMax(o.LocalReaders))); err != nil {
		return err
	}
	f := res.Footprint
	progress("local: %d readers of the whole epoch: page cache %.1f MB of its %.1f MB, the readers' own memory %.1f MB",
		f.Readers, float64(f.PageCacheBytes)/1e6, float64(f.EpochBytes)/1e6, float64(f.ReaderBytes)/1e6)
	return nil
}

func slicesMax(v []int) int {
	m := 0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// serverCPU returns the user + system CPU seconds of process pid, all its
// threads (/proc/PID/stat, in clock ticks of 1/100 s: Linux's USER_HZ).
func serverCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: local: server CPU: %w", err)
	}
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: local: server CPU: /proc/%d/stat has %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseFloat(f[11], 64) // utime, field 14
	st, err2 := strconv.ParseFloat(f[12], 64) // stime, field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bench: local: server CPU: %w", err)
	}
	return (ut + st) / 100, nil
}

// footprint runs n local readers that each read the whole epoch 0 (world
// size 1) at once; when all hold their last batch it measures the page
// cache's residency of the epoch's files (mincore) and the memory the
// readers hold of their own.
func footprint(ctx context.Context, addr, cache string, batch, rowBytes, images, n int) (Footprint, error) {
	files, err := filepath.Glob(filepath.Join(cache, "e-*", "shard-*.arrow"))
	if err != nil || len(files) == 0 {
		return Footprint{}, fmt.Errorf("bench: local: no shard files in %s (%v)", cache, err)
	}
	fp := Footprint{Readers: n, BatchBytes: int64(batch) * int64(rowBytes)}
	before := liveHeap()
	var arrived atomic.Int64
	all := make(chan struct{})  // closed when every reader has its last batch
	done := make(chan struct{}) // closed once measured
	var measureErr error
	g, gctx := errgroup.WithContext(ctx)
	for range n {
		g.Go(func() error {
			cl, err := flightsvc.Dial(gctx, addr, &flightsvc.ClientOptions{Transport: service.TransportLocal})
			if err != nil {
				return err
			}
			defer cl.Close()
			rows := 0
			_, err = cl.Fetch(gctx, service.Request{Dataset: datasetName, BatchSize: batch, WorldSize: 1, Shuffle: true},
				func(rec arrow.RecordBatch) error {
					if rows += int(rec.NumRows()); rows < images {
						return nil
					}
					if arrived.Add(1) == int64(n) {
						close(all)
					}
					select {
					case <-done:
						return nil
					case <-gctx.Done():
						return gctx.Err()
					}
				})
			return err
		})
	}
	g.Go(func() error {
		select {
		case <-all:
		case <-gctx.Done():
			return nil
		}
		defer close(done)
		fp.ReaderBytes = max(0, liveHeap()-before)
		for _, f := range files {
			size, resident, err := residency(f)
			if err != nil {
				measureErr = err
				return err
			}
			fp.EpochBytes += size
			fp.PageCacheBytes += resident
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return fp, fmt.Errorf("bench: local: footprint: %w", err)
	}
	return fp, measureErr
}

// liveHeap returns the bytes of live objects on the Go heap, after a
// collection.
func liveHeap() int64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(sample[0].Value.Uint64())
}

// residency returns the size of file and how many of its bytes are in the
// page cache (mincore over a mapping that touches no page).
func residency(file string) (size, resident int64, err error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: local: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return 0, 0, fmt.Errorf("bench: local: %s: %v", file, err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: local: map %s: %w", file, err)
	}
	defer unix.Munmap(m)
	page := int64(os.Getpagesize())
	vec := make([]byte, (fi.Size()+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0, 0, fmt.Errorf("bench: local: mincore %s: %w", file, e)
	}
	for i, v := range vec {
		if v&1 != 0 {
			resident += min(page, fi.Size()-int64(i)*page)
		}
	}
	return fi.Size(), resident, nil
}

// writeLocal prints the local phase's section of the table.
func (r *Report) writeLocal(w io.Writer) {
	l := r.Local
	if l == nil {
		return
	}
	fmt.Fprintln(w, "\nLOCAL: same-node readers read the cache in place (SPEC §9), beside the ordinary stream, one loaderd serve process")
	if l.Error != "" {
		fmt.Fprintln(w, l.Error)
		return
	}
	memcpy := r.Limits.Memcpy.GBPerSec
	fmt.Fprintln(w, "way\treaders\timages/s\t[min–max]\tGB/s\t/1-thread memcpy\t/ordinary stream\tserver CPU-s/GB\t")
	f := l.Flight
	fmt.Fprintf(w, "Flight (loopback TCP)\t%d\t%.0f\t%s\t%.2f\t%s\t1.00\t%.3f\t\n", f.Clients, f.ImagesPerSec,
		span(f.Min, f.Max, "%.0f"), f.GBPerSec, ratioOf(f.GBPerSec, memcpy), l.FlightServerCPUPerGB)
	for _, p := range l.Readers {
		cpu := "-"
		if p.Clients == 1 {
			cpu = fmt.Sprintf("%.3f", l.LocalServerCPUPerGB)
		}
		fmt.Fprintf(w, "local\t%d\t%.0f\t%s\t%.2f\t%s\t%s\t%s\t\n", p.Clients, p.ImagesPerSec, span(p.Min, p.Max, "%.0f"),
			p.GBPerSec, ratioOf(p.GBPerSec, memcpy), ratioOf(p.ImagesPerSec, f.ImagesPerSec), cpu)
	}
	fp := l.Footprint
	if fp.EpochBytes > 0 {
		fmt.Fprintf(w, "%d readers each reading the whole epoch at once: the page cache held %.1f of its %.1f MB (%.2f copies); the readers' own memory %.1f MB between them (their batch buffers: %.1f MB each)\n",
			fp.Readers, float64(fp.PageCacheBytes)/1e6, float64(fp.EpochBytes)/1e6, float64(fp.PageCacheBytes)/float64(fp.EpochBytes),
			float64(fp.ReaderBytes)/1e6, float64(fp.BatchBytes)/1e6)
	}
}

// ratioOf is a/b to two places, or "-" without b.
func ratioOf(a, b float64) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}
