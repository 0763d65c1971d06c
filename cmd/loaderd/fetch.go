package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"golang.org/x/sync/errgroup"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/bench"
	"github.com/loaderd/loaderd/service"
)

type fetchFlags struct {
	addr, tokenFile, tlsCA   string
	useTLS, insecure, asJSON bool
	vsLoopback               bool
	decode                   bool
	clients, repeat          int
	req                      service.Request
}

func runFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f fetchFlags
	fs := newFlags("fetch", "--dataset NAME [flags]", stderr)
	fs.StringVar(&f.addr, "addr", "127.0.0.1:8815", "server `address`")
	fs.StringVar(&f.req.Dataset, "dataset", "", "dataset `name` (required)")
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
	fs.StringVar(&f.tokenFile, "token-file", "", "`file` with the bearer token")
	fs.BoolVar(&f.useTLS, "tls", false, "connect with TLS (grpc+tls)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA certificate `file` (PEM) to verify the server")
	fs.BoolVar(&f.insecure, "tls-insecure", false, "with --tls, do not verify the server certificate")
	fs.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	fs.BoolVar(&f.vsLoopback, "vs-loopback", false, "then measure loopback TCP with as many streams as clients, in this process, and print the ratio")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if f.req.Dataset == "" {
		return usagef("--dataset is required")
	}
	if f.clients < 1 || f.clients > 1024 {
		return usagef("--clients must be in 1..1024")
	}
	if f.repeat < 1 {
		return usagef("--repeat must be at least 1")
	}
	copts := &flightsvc.ClientOptions{}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		copts.Token = strings.TrimSpace(string(b))
	}
	if f.useTLS {
		cfg := &tls.Config{InsecureSkipVerify: f.insecure, MinVersion: tls.VersionTLS12}
		if f.tlsCA != "" {
			pem, err := os.ReadFile(f.tlsCA)
			if err != nil {
				return fmt.Errorf("--tls-ca: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--tls-ca %s: no certificate found", f.tlsCA)
			}
		}
		copts.TLS = cfg
	}
	res, err := fetch(ctx, &f, copts)
	if err != nil {
		return err
	}
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
	fmt.Fprintf(stdout, "%s epoch %d ×%d: %d clients, %d batches, %d images, %.1f MB in %.2f s: %.0f images/s, %.0f MB/s; first batch after %.1f ms\n",
		f.req.Dataset, f.req.Epoch, f.repeat, res.Clients, res.Batches, res.Images, float64(res.Bytes)/1e6, res.Seconds,
		res.ImagesPerSec, res.MBPerSec, res.FirstBatchMs)
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
	FirstBatchMs float64 `json:"first_batch_ms"` // the slowest client's

	LoopbackGBPerSec float64 `json:"loopback_gb_per_sec,omitempty"` // with --vs-loopback
	VsLoopback       float64 `json:"vs_loopback,omitempty"`         // served GB/s over loopback GB/s
}

func fetch(ctx context.Context, f *fetchFlags, copts *flightsvc.ClientOptions) (*fetchResult, error) {
	stats := make([]flightsvc.FetchStats, f.clients)
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
			var fn func(arrow.Record) error
			if f.decode {
				fn = func(arrow.Record) error { return nil }
			}
			for pass := range max(1, f.repeat) {
				st, err := cl.Fetch(gctx, req, fn)
				if err != nil {
					return err
				}
				if pass == 0 {
					stats[c].FirstBatch = st.FirstBatch
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
	for _, s := range stats {
		res.Batches += s.Batches
		res.Images += s.Rows
		res.Bytes += s.Bytes
		res.FirstBatchMs = max(res.FirstBatchMs, float64(s.FirstBatch)/1e6)
	}
	if elapsed > 0 {
		res.ImagesPerSec = float64(res.Images) / elapsed
		res.MBPerSec = float64(res.Bytes) / 1e6 / elapsed
	}
	return res, nil
}
