package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/bench"
	"github.com/loaderd/loaderd/service"
)

type fetchFlags struct {
	connFlags
	transport       string
	cacheDir        string
	asJSON          bool
	vsLoopback      bool
	decode, digest  bool
	clients, repeat int
	req             service.Request
}

func runFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f fetchFlags
	fs := newFlags("fetch", "--dataset NAME [flags]")
	f.connFlags.register(fs.FlagSet)
	fs.StringVar(&f.transport, "transport", service.TransportAuto, "`WAY` batches come: auto (read the server's cache in place when it is on this host and readable, else flight), local, flight")
	fs.StringVar(&f.cacheDir, "cache-dir", "", "`DIRECTORY` where this host sees the server's cache, when not at the server's path (a container mount)")
	fs.StringVar(&f.req.Dataset, "dataset", "", "dataset `NAME` (required)")
	fs.IntVar(&f.req.Epoch, "epoch", 0, "epoch")
	fs.IntVar(&f.req.BatchSize, "batch-size", 256, "batch size")
	fs.IntVar(&f.req.Rank, "rank", 0, "rank of this client (ignored with --clients > 1)")
	fs.IntVar(&f.req.WorldSize, "world-size", 1, "world size (with --clients N, N)")
	fs.BoolVar(&f.req.DropLast, "drop-last", false, "drop the last short batch and truncate to a multiple of the world size")
	fs.IntVar(&f.req.StartBatch, "start-batch", 0, "resume at this batch")
	fs.BoolVar(&f.req.Shuffle, "shuffle", true, "shuffled epoch order")
	fs.StringVar(&f.req.GPU, "gpu", "", "GPU (index, UUID or PCI bus id) to be fed by")
	fs.IntVar(&f.clients, "clients", 1, "concurrent clients; client r fetches rank r of world size N")
	fs.IntVar(&f.repeat, "repeat", 1, "stream the request this many times over the same connections (steady-state throughput)")
	fs.BoolVar(&f.decode, "decode", false, "decode every batch into Arrow arrays (default: count bytes only)")
	fs.BoolVar(&f.digest, "digest", false, "print the SHA-256 of the stream's values (per batch: index, label, image bytes) to compare clients, transports or servers on the same request (batch size, rank and world size: batches are hashed as they come); decodes, one client, one pass")
	fs.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&f.vsLoopback, "vs-loopback", false, "then measure loopback TCP with as many streams as clients, in this process, and print the ratio")
	fs.notes = `Values the server refuses (an unknown dataset, --start-batch past the rank's
last batch, a GPU the node lacks) are usage errors: exit 2.`
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if f.req.Dataset == "" {
		return usagef("--dataset NAME is required: a NAME the server was started with (serve --data NAME=PATH)")
	}
	switch {
	case f.clients < 1 || f.clients > 1024:
		return usagef("--clients %d: want 1..1024", f.clients)
	case f.repeat < 1:
		return usagef("--repeat %d: want 1 or more", f.repeat)
	case f.req.BatchSize < 1 || f.req.BatchSize > 65536:
		return usagef("--batch-size %d: want 1..65536", f.req.BatchSize)
	case f.req.WorldSize < 1 || f.req.WorldSize > 65536:
		return usagef("--world-size %d: want 1..65536", f.req.WorldSize)
	case f.req.Rank < 0 || f.req.Rank >= f.req.WorldSize:
		return usagef("--rank %d: want 0..%d (below --world-size)", f.req.Rank, f.req.WorldSize-1)
	case f.req.Epoch < 0:
		return usagef("--epoch %d: want 0 or more", f.req.Epoch)
	case f.req.StartBatch < 0:
		return usagef("--start-batch %d: want 0 or more", f.req.StartBatch)
	case f.digest && (f.clients != 1 || f.repeat != 1):
		return usagef("--digest: want --clients 1 and --repeat 1")
	case f.transport != service.TransportAuto && f.transport != service.TransportLocal && f.transport != service.TransportFlight:
		return usagef("--transport %q: want auto, local or flight", f.transport)
	}
	copts, err := f.connFlags.options()
	if err != nil {
		return err
	}
	copts.Transport, copts.CacheDir = f.transport, f.cacheDir
	copts.Logger = slog.New(rephrased{newLogger(stderr, "info").Handler()})
	res, err := fetch(ctx, &f, copts)
	if err != nil {
		return serverError(f.addr, err, f.served(ctx, copts, err))
	}
	res.Fallback = clientTerms.Replace(res.Fallback)
	if f.vsLoopback {
		lb, err := bench.Loopback(ctx, f.clients, 1<<30, 3)
		if err != nil {
			return err
		}
		res.LoopbackGBPerSec = lb.GBPerSec
		if lb.GBPerSec > 0 {
			res.VsLoopback = res.MBPerSec / 1e3 / lb.GBPerSec
		}
	}
	if f.asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "%s epoch %d ×%d: %s, %s, %s, %.1f MB in %.2f s: %.0f images/s, %.0f MB/s; first batch after %.1f ms (%s)\n",
		f.req.Dataset, f.req.Epoch, f.repeat, count(res.Clients, "client", "clients"), count(res.Batches, "batch", "batches"),
		count(res.Images, "image", "images"), float64(res.Bytes)/1e6, res.Seconds,
		res.ImagesPerSec, res.MBPerSec, res.FirstBatchMs, res.Transport)
	if f.digest {
		fmt.Fprintf(stdout, "sha256 %s\n", res.SHA256)
	}
	if f.vsLoopback {
		fmt.Fprintf(stdout, "loopback TCP, %d stream(s), same run: %.2f GB/s; served/loopback %.2f\n",
			f.clients, res.LoopbackGBPerSec, res.VsLoopback)
	}
	return nil
}

// fetchResult is what `loaderd fetch` reports, summed over its clients.
type fetchResult struct {
	Clients      int     `json:"clients"`
	Batches      int64   `json:"batches"`
	Images       int64   `json:"images"`
	Bytes        int64   `json:"bytes"`
	Seconds      float64 `json:"seconds"`
	ImagesPerSec float64 `json:"images_per_sec"`
	MBPerSec     float64 `json:"mb_per_sec"`
	FirstBatchMs float64 `json:"first_batch_ms"`     // the slowest client's
	Transport    string  `json:"transport"`          // how the batches came: local or flight
	Fallback     string  `json:"fallback,omitempty"` // why --transport auto streamed over Flight

	LoopbackGBPerSec float64 `json:"loopback_gb_per_sec,omitempty"` // with --vs-loopback
	VsLoopback       float64 `json:"vs_loopback,omitempty"`         // served GB/s over loopback GB/s
	SHA256           string  `json:"sha256,omitempty"`              // with --digest: arrowio.WriteValues of every batch
}

func fetch(ctx context.Context, f *fetchFlags, copts *flightsvc.ClientOptions) (*fetchResult, error) {
	stats := make([]flightsvc.FetchStats, f.clients)
	digest := sha256.New()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for c := range f.clients {
		g.Go(func() error {
			cl, err := flightsvc.Dial(gctx, f.addr, copts)
			if err != nil {
				return err
			}
			defer cl.Close()
			req := f.req
			if f.clients > 1 {
				req.Rank, req.WorldSize = c, f.clients
			}
			var fn func(arrow.RecordBatch) error
			switch {
			case f.digest:
				fn = func(rec arrow.RecordBatch) error { return arrowio.WriteValues(digest, rec) }
			case f.decode:
				fn = func(arrow.RecordBatch) error { return nil }
			}
			for pass := range max(1, f.repeat) {
				st, err := cl.Fetch(gctx, req, fn)
				if err != nil {
					return err
				}
				if pass == 0 {
					stats[c].FirstBatch = st.FirstBatch
					stats[c].Transport, stats[c].Fallback = st.Transport, st.Fallback
				}
				stats[c].Batches += st.Batches
				stats[c].Rows += st.Rows
				stats[c].Bytes += st.Bytes
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	elapsed := time.Since(start).Seconds()
	res := &fetchResult{Clients: f.clients, Seconds: elapsed}
	if f.digest {
		res.SHA256 = hex.EncodeToString(digest.Sum(nil))
	}
	for _, s := range stats {
		res.Batches += s.Batches
		res.Images += s.Rows
		res.Bytes += s.Bytes
		res.FirstBatchMs = max(res.FirstBatchMs, float64(s.FirstBatch)/1e6)
		res.Transport, res.Fallback = s.Transport, s.Fallback
	}
	if elapsed > 0 {
		res.ImagesPerSec = float64(res.Images) / elapsed
		res.MBPerSec = float64(res.Bytes) / 1e6 / elapsed
	}
	return res, nil
}

// requestFlags maps the descriptor's JSON fields (SPEC §4) to fetch's flags.
var requestFlags = strings.NewReplacer(
	`"dataset"`, "--dataset", `"epoch"`, "--epoch", `"batch_size"`, "--batch-size",
	`"rank"`, "--rank", `"world_size"`, "--world-size", `"start_batch"`, "--start-batch",
	`"drop_last"`, "--drop-last", `"shuffle"`, "--shuffle", `"gpu"`, "--gpu")

// pkgPrefix matches the Go package prefixes of the server's messages.
var pkgPrefix = regexp.MustCompile(`\b(loader|service|arrowio|flightsvc|shardcache|augment|gpu): `)

// clientTerms puts the Go client's neutral hints in the command line's
// terms: the flags that do what they describe.
var clientTerms = strings.NewReplacer(flightsvc.CacheUnreadableHint,
	"run as a member of the server's --cache-group, or give --cache-dir DIR where this host mounts the cache at another path")

// rephrased is a log handler that words the Go client's log lines (why
// transport auto streams over Flight) in clientTerms.
type rephrased struct{ slog.Handler }

func (h rephrased) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, clientTerms.Replace(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString {
			a.Value = slog.StringValue(clientTerms.Replace(a.Value.String()))
		}
		out.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h rephrased) WithAttrs(as []slog.Attr) slog.Handler { return rephrased{h.Handler.WithAttrs(as)} }
func (h rephrased) WithGroup(name string) slog.Handler    { return rephrased{h.Handler.WithGroup(name)} }

// serverError words a failed call to the server at addr: a request the
// server refuses is a usage error naming the flag (and, for a dataset it
// does not serve, the datasets it serves: served, when known); an
// unreachable server names --addr.
func serverError(addr string, err error, served []string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := clientTerms.Replace(requestFlags.Replace(pkgPrefix.ReplaceAllString(st.Message(), "")))
	switch st.Code() {
	case codes.NotFound:
		if len(served) > 0 {
			return usagef("the server at %s refused the request: %s; it serves: %s", addr, msg, strings.Join(served, ", "))
		}
		return usagef("the server at %s refused the request: %s", addr, msg)
	case codes.InvalidArgument:
		return usagef("the server at %s refused the request: %s", addr, msg)
	case codes.FailedPrecondition:
		if strings.Contains(msg, "local transport unavailable") {
			return usagef("--transport local: the server at %s cannot be read in place: %s (--transport auto falls back to flight)", addr, strings.TrimPrefix(msg, "local transport unavailable: "))
		}
	case codes.Unauthenticated:
		return usagef("the server at %s wants a token: %s (--token-file)", addr, msg)
	case codes.Unavailable:
		if strings.Contains(msg, "connection refused") {
			return fmt.Errorf("nothing listens at %s (connection refused): start `loaderd serve` there, or point --addr at a server", addr)
		}
		return fmt.Errorf("the server at %s is unavailable: %s", addr, msg)
	case codes.Canceled:
		return context.Canceled
	}
	return fmt.Errorf("the server at %s: %s: %s", addr, st.Code(), msg)
}
