package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/gpu"
	"github.com/loaderd/loaderd/loader"
	"github.com/loaderd/loaderd/shardcache"
)

type serveFlags struct {
	pipelineFlags
	listen         string
	metricsListen  string
	prefetchEpochs int
	maxStreams     int
	authTokenFile  string
	tlsCert        string
	tlsKey         string
	ticketKeyFile  string
	drainTimeout   time.Duration
	pprof          bool
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := newFlags("serve", "--data NAME=PATH [--data ...] [flags]", stderr)
	f.register(fs)
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := f.check(true); err != nil {
		return err
	}
	if f.prefetchEpochs < 0 || f.maxStreams < 1 {
		return usagef("--prefetch-epochs must be ≥ 0 and --max-streams ≥ 1")
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return usagef("--tls-cert and --tls-key go together")
	}
	logger := newLogger(stderr, f.logLevel)
	return serve(ctx, &f, logger, nil)
}

// register adds serve's flags to fs; their defaults land in f at once.
func (f *serveFlags) register(fs *flag.FlagSet) {
	f.pipelineFlags.register(fs)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8815", "Flight `address` to listen on")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "`address` for Prometheus /metrics and /healthz (empty = off)")
	fs.IntVar(&f.prefetchEpochs, "prefetch-epochs", 1, "epochs after the one streamed to precompute in the background")
	fs.IntVar(&f.maxStreams, "max-streams", 64, "concurrent DoGet streams before ResourceExhausted")
	fs.StringVar(&f.authTokenFile, "auth-token-file", "", "`file` holding the bearer token every call must carry")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate `file` (PEM); with --tls-key serves grpc+tls")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key `file` (PEM)")
	fs.StringVar(&f.ticketKeyFile, "ticket-key-file", "", "`file` of the key that signs tickets (default CACHE-DIR/ticket.key)")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 30*time.Second, "how long SIGTERM waits for running streams")
	fs.BoolVar(&f.pprof, "pprof", false, "also serve Go's /debug/pprof/ on --metrics-listen")
}

// stack is what serve, precompute and demo build from the pipeline flags.
type stack struct {
	cache  *shardcache.Cache
	loader *loader.Loader
	topo   *gpu.Topology
}

func (s *stack) Close() {
	if s.loader != nil {
		s.loader.Close()
	}
	if s.cache != nil {
		s.cache.Close()
	}
}

func buildStack(ctx context.Context, f *pipelineFlags, prefetch int, logger *slog.Logger, reg prometheus.Registerer) (*stack, error) {
	pl, err := f.parsePipeline()
	if err != nil {
		return nil, err
	}
	topo, err := gpu.Load(&gpu.Options{RequireGPU: f.requireGPU, Logger: logger})
	if err != nil {
		return nil, err
	}
	cache, err := shardcache.Open(f.cacheDir, &shardcache.Options{Budget: int64(f.cacheBudget), Logger: logger, Registerer: reg})
	if err != nil {
		return nil, err
	}
	l, err := loader.New(ctx, &loader.Options{
		Datasets:       f.data,
		Pipeline:       pl,
		Seed:           f.seed,
		Cache:          cache,
		Workers:        f.workers,
		ShardSize:      f.shardSize,
		PrefetchEpochs: prefetch,
		OnError:        f.onError,
		Topology:       topo,
		Logger:         logger,
		Registerer:     reg,
	})
	if err != nil {
		cache.Close()
		return nil, err
	}
	return &stack{cache: cache, loader: l, topo: topo}, nil
}

// serve runs the Flight server until ctx is done. ready, if not nil,
// receives the Flight address once it listens (demo and tests use it).
func serve(ctx context.Context, f *serveFlags, logger *slog.Logger, ready chan<- string) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st, err := buildStack(ctx, &f.pipelineFlags, f.prefetchEpochs, logger, reg)
	if err != nil {
		return err
	}
	defer st.Close()

	keyFile := f.ticketKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(f.cacheDir, "ticket.key")
	}
	key, err := flightsvc.LoadOrCreateKey(keyFile)
	if err != nil {
		return err
	}
	opts := &flightsvc.Options{
		Source:       st.loader,
		Actions:      st.loader,
		TicketKey:    key,
		MaxStreams:   f.maxStreams,
		Registerer:   reg,
		Logger:       logger,
		DrainTimeout: f.drainTimeout,
	}
	if f.authTokenFile != "" {
		b, err := os.ReadFile(f.authTokenFile)
		if err != nil {
			return fmt.Errorf("--auth-token-file: %w", err)
		}
		opts.AuthToken = strings.TrimSpace(string(b))
		if opts.AuthToken == "" {
			return fmt.Errorf("--auth-token-file %s is empty", f.authTokenFile)
		}
	}
	scheme := "grpc"
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "grpc+tls"
	}
	srv, err := flightsvc.New(opts)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	logger.Info("loaderd serving", "location", scheme+"://"+lis.Addr().String(),
		"datasets", f.data.String(), "pipeline", f.pipeline, "cache", f.cacheDir,
		"gpus", len(st.topo.Devices), "topology", st.topo.Source)
	if ready != nil {
		ready <- lis.Addr().String()
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return st.loader.Run(gctx) })
	g.Go(func() error { return srv.Serve(gctx, lis) })
	if f.metricsListen != "" {
		mlis, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			lis.Close()
			return fmt.Errorf("--metrics-listen: %w", err)
		}
		logger.Info("metrics", "url", "http://"+mlis.Addr().String()+"/metrics")
		g.Go(func() error { return serveMetrics(gctx, mlis, reg, f.pprof) })
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil // SIGTERM or SIGINT: a clean exit
	}
	logger.Info("loaderd stopped")
	return err
}

func serveMetrics(ctx context.Context, lis net.Listener, reg *prometheus.Registry, withPprof bool) error {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		hs.Shutdown(sctx)
		<-errc
		return nil
	}
}
