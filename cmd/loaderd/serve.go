package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/gpu"
	"github.com/loaderd/loaderd/loader"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
	"github.com/loaderd/loaderd/tier"
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
	tlsClientCA    string
	ticketKeyFile  string
	drainTimeout   time.Duration
	pprof          bool
	// preopened, when not nil, is the Flight listener, opened on listen
	// before a slow start (demo's); serve closes it.
	preopened net.Listener
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := newFlags("serve", "--data NAME=PATH [--data ...] [flags]")
	f.register(fs.FlagSet)
	fs.notes = `Epochs not yet cached are computed while they stream; the next --prefetch-epochs
are computed in the background. precompute writes the same cache entries when
given the same ` + keyFlagsText() + `. ` + sizeNote + `
SIGINT or SIGTERM drains running streams (up to --drain-timeout) and exits 0.`
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	logger := newLogger(stderr, f.logLevel)
	return serve(ctx, &f, logger, nil)
}

// register adds serve's flags to fs; their defaults land in f at once.
func (f *serveFlags) register(fs *pflag.FlagSet) {
	f.pipelineFlags.register(fs)
	f.registerRemote(fs)
	fs.StringVar(&f.listen, "listen", defaultListen, "Flight address `HOST:PORT` to listen on, or unix:///PATH.sock (trainers on this host)")
	fs.StringVar(&f.metricsListen, "metrics-listen", "", "address `HOST:PORT` for Prometheus /metrics and /healthz (empty = off)")
	fs.BoolVar(&f.pprof, "pprof", false, "also serve Go's /debug/pprof/ on --metrics-listen")
	fs.IntVar(&f.prefetchEpochs, "prefetch-epochs", 1, "epochs after the one streamed to compute in the background")
	fs.IntVar(&f.maxStreams, "max-streams", 64, "concurrent DoGet streams before ResourceExhausted")
	fs.StringVar(&f.authTokenFile, "auth-token-file", "", "`FILE` holding the bearer token every call must carry")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate `FILE` (PEM); with --tls-key serves grpc+tls")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS private key `FILE` (PEM)")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "CA certificate `FILE` (PEM): require a client certificate signed by it on every connection (mutual TLS; needs --tls-cert)")
	fs.StringVar(&f.ticketKeyFile, "ticket-key-file", "", "`FILE` of the key that signs tickets (default CACHE-DIR/ticket.key)")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 30*time.Second, "how long SIGTERM waits for running streams")
	fs.DurationVar(&f.rescanInterval, "rescan-interval", 0, "list the datasets again this often, e.g. 1m, where changes are not notified (NFS); 0 = only on local change notification and the rescan action")
}

// check validates serve's values beyond the pipeline flags.
func (f *serveFlags) check() error {
	if err := f.pipelineFlags.check(true); err != nil {
		return err
	}
	switch {
	case f.prefetchEpochs < 0:
		return usagef("--prefetch-epochs %d: want 0 (off) or more", f.prefetchEpochs)
	case f.maxStreams < 1:
		return usagef("--max-streams %d: want 1 or more", f.maxStreams)
	case f.drainTimeout < 0:
		return usagef("--drain-timeout %v: want 0 or more, e.g. 30s", f.drainTimeout)
	case f.rescanInterval < 0:
		return usagef("--rescan-interval %v: want 0 (off) or more, e.g. 1m", f.rescanInterval)
	case (f.tlsCert == "") != (f.tlsKey == ""):
		return usagef("--tls-cert and --tls-key go together: give both or neither")
	case f.tlsClientCA != "" && f.tlsCert == "":
		return usagef("--tls-client-ca asks clients for certificates over TLS: give --tls-cert and --tls-key too")
	case f.pprof && f.metricsListen == "":
		return usagef("--pprof serves on --metrics-listen: give --metrics-listen too, e.g. 127.0.0.1:9100")
	}
	if err := checkListen("listen", f.listen); err != nil {
		return err
	}
	if f.metricsListen != "" {
		return checkAddr("metrics-listen", f.metricsListen)
	}
	return nil
}

// stack is what serve, precompute and demo build from the pipeline flags.
type stack struct {
	cache  *shardcache.Cache
	loader *loader.Loader
	topo   *gpu.Topology
	tier   *tier.Store // nil without --remote-cache
	// pipeline is the parsed --pipeline and --decoder.
	pipeline *augment.Pipeline
}

func (s *stack) Close() {
	if s.loader != nil {
		s.loader.Close()
	}
	if s.cache != nil {
		s.cache.Close()
	}
	if s.tier != nil {
		s.tier.Close()
	}
}

func buildStack(ctx context.Context, f *pipelineFlags, prefetch int, logger *slog.Logger, reg prometheus.Registerer) (*stack, error) {
	raiseFileLimit(logger)
	pl, err := f.parsePipeline()
	if err != nil {
		return nil, err
	}
	topo, err := gpu.Load(&gpu.Options{RequireGPU: f.requireGPU, Logger: logger})
	if err != nil {
		return nil, err
	}
	var remote *tier.Store
	if f.remoteCache != "" {
		remote, err = tier.Open(ctx, f.remoteCache, &tier.Options{Logger: logger, Registerer: reg})
		if errors.Is(err, tier.ErrURL) {
			return nil, &usageError{msg: "--remote-cache: " + strings.TrimPrefix(err.Error(), "tier: ")}
		} else if err != nil {
			return nil, fmt.Errorf("--remote-cache: %w", err)
		}
		logger.Info("shared tier", "remote_cache", remote.String())
	}
	cache, err := shardcache.Open(f.cacheDir, &shardcache.Options{Budget: int64(f.cacheBudget), Group: f.cacheGroup, Logger: logger, Registerer: reg})
	if err != nil && remote != nil {
		remote.Close()
	}
	if errors.Is(err, shardcache.ErrLocked) {
		flag, value := f.cacheDirGiven()
		return nil, fmt.Errorf("%s %s is in use by another loaderd (serve, precompute or demo): stop it, or give this one another %s", flag, value, flag)
	} else if errors.Is(err, shardcache.ErrGroup) {
		return nil, noGroup(f.cacheGroup)
	} else if err != nil {
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
		RescanInterval: f.rescanInterval,
		OnError:        f.onError,
		Topology:       topo,
		Tier:           remote,
		Logger:         logger,
		Registerer:     reg,
	})
	if err != nil {
		cache.Close()
		if remote != nil {
			remote.Close()
		}
		if errors.Is(err, loader.ErrDataset) {
			return nil, datasetError("--data ", err)
		}
		return nil, err
	}
	return &stack{cache: cache, loader: l, topo: topo, tier: remote, pipeline: pl}, nil
}

// otherWarnings warns of the epochs of the served datasets that the cache
// holds and this run will not read: under another seed, pipeline, decoder
// or shard size, or of an earlier listing. addr is the --addr that reaches
// the server that can evict them ("" for the default, or when unknown).
func otherWarnings(st *stack, f *pipelineFlags, addr string) ([]warning, error) {
	var out []warning
	for _, ds := range f.data {
		others, err := st.loader.OtherEpochs(ds.Name)
		if err != nil {
			return nil, err
		}
		toRemove := evictOtherCommand(ds.Name, addr) + ", while serve runs; with --cache-budget they are evicted first"
		for _, o := range others {
			if o.Listing == service.ListingEarlier {
				out = append(out, warning{
					msg: "the cache holds epochs of an earlier listing of this dataset (its files changed since): no run reads them",
					args: []any{"dataset", ds.Name, "epochs", loader.FormatEpochs(o.Epochs), "size", humanize.IBytes(uint64(o.Bytes)),
						"listed", o.Listed, "samples", o.Samples, "to_remove", toRemove},
				})
				continue
			}
			out = append(out, warning{
				msg: "the cache holds epochs of this dataset that this run will not read",
				args: []any{"dataset", ds.Name, "epochs", loader.FormatEpochs(o.Epochs), "size", humanize.IBytes(uint64(o.Bytes)),
					"seed", o.Seed, "pipeline", o.Pipeline, "decoder", o.Decoder, "shard_size", o.ShardSize,
					"to_use_them", f.matching(st.pipeline, o), "to_remove", toRemove},
			})
		}
	}
	return out, nil
}

// evictOtherCommand is the command line that frees the epochs of dataset
// the server at addr does not read; --addr is left out for the default
// address (or "").
func evictOtherCommand(dataset, addr string) string {
	cmd := "loaderd evict --dataset " + dataset + " --other"
	if addr != "" && addr != defaultListen {
		cmd += " --addr " + addr
	}
	return cmd
}

// clientAddr is the --addr of a client of the server listening on lis,
// started with --listen given: the address as given (a unix:// one as
// is), with the port lis got for port 0, and 127.0.0.1 for a server on
// every interface.
func clientAddr(given string, lis net.Addr) string {
	if _, ok := unixPath(given); ok {
		return given
	}
	host, port, err := net.SplitHostPort(given)
	if err != nil {
		return lis.String()
	}
	if ta, ok := lis.(*net.TCPAddr); ok && port == "0" {
		port = strconv.Itoa(ta.Port)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// A warning is a log line: its message and key-value pairs.
type warning struct {
	msg  string
	args []any
}

// budgetWarnings warns of a --cache-budget smaller than one epoch of a
// served dataset: serve starts, but every epoch of it streams uncached
// (each batch computed for each request) and nothing is prefetched.
func budgetWarnings(l *loader.Loader, f *pipelineFlags, prefetch int) []warning {
	budget := int64(f.cacheBudget)
	if budget == 0 {
		return nil
	}
	var out []warning
	for _, ds := range f.data {
		size, err := l.EpochBytes(ds.Name)
		if err != nil || size <= budget {
			continue
		}
		out = append(out, warning{
			msg: "--cache-budget is smaller than one epoch of this dataset: every epoch of it is streamed uncached, each batch computed for each request, and none is prefetched",
			args: []any{"dataset", ds.Name, "cache_budget", humanize.IBytes(uint64(budget)), "epoch", humanize.IBytes(uint64(size)),
				"to_cache_it", "--cache-budget " + ceilSize(size*int64(1+prefetch))},
		})
	}
	return out
}

// ceilSize writes n bytes as a --cache-budget value of at least n: whole
// units of the largest of K, M, G, T that leaves at least 10 of them, else
// bytes (B: a size always has its unit).
func ceilSize(n int64) string {
	unit, suffix := int64(1), "B"
	for i, u := range []string{"K", "M", "G", "T"} {
		if v := int64(1) << (10 * (i + 1)); n >= 10*v {
			unit, suffix = v, u
		}
	}
	return strconv.FormatInt((n+unit-1)/unit, 10) + suffix
}

// matching names the flags that would make this run read the epochs o:
// those of --seed, --pipeline, --decoder and --shard-size that differ.
func (f *pipelineFlags) matching(pl *augment.Pipeline, o service.OtherEpochs) string {
	var flags []string
	if o.Pipeline != pl.String() {
		flags = append(flags, fmt.Sprintf("--pipeline '%s'", o.Pipeline))
	}
	if o.Decoder != "" && o.Decoder != pl.Decoder() {
		dec := "libjpeg-turbo"
		if strings.HasPrefix(o.Decoder, "go") {
			dec = "go"
		}
		flags = append(flags, "--decoder "+dec)
	}
	if o.ShardSize != 0 && o.ShardSize != f.shardSize {
		flags = append(flags, fmt.Sprintf("--shard-size %d", o.ShardSize))
	}
	if o.Seed != f.seed {
		flags = append(flags, fmt.Sprintf("--seed %d", o.Seed))
	}
	if len(flags) == 0 {
		return "unknown pipeline: see `loaderd pipelines TEXT` for fingerprints"
	}
	return strings.Join(flags, " ")
}

// serve runs the Flight server until ctx is done. ready, if not nil,
// receives the Flight address once it listens (demo and tests use it).
// Everything a user can get wrong is checked before the listeners are
// opened: the files of --auth-token-file and the TLS flags, --cache-group,
// the pipeline and the datasets (listed), and the cache (locked). A busy
// address is then a failure of its own (exit 1), never one that hides a
// usage error. f.preopened, when set (demo), is the Flight listener.
func serve(ctx context.Context, f *serveFlags, logger *slog.Logger, ready chan<- string) error {
	gid := -1
	if f.cacheGroup != "" {
		var err error
		if gid, err = groupID(f.cacheGroup); err != nil {
			return err
		}
	}
	opts := &flightsvc.Options{MaxStreams: f.maxStreams, Logger: logger, DrainTimeout: f.drainTimeout}
	if f.authTokenFile != "" {
		b, err := os.ReadFile(f.authTokenFile)
		if err != nil {
			return usagef("--auth-token-file: %v", err)
		}
		opts.AuthToken = strings.TrimSpace(string(b))
		if opts.AuthToken == "" {
			return usagef("--auth-token-file %s is empty: write the token into it", f.authTokenFile)
		}
	}
	scheme := "grpc"
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return usagef("--tls-cert/--tls-key: %v", err)
		}
		opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "grpc+tls"
		if f.tlsClientCA != "" {
			pem, err := os.ReadFile(f.tlsClientCA)
			if err != nil {
				return usagef("--tls-client-ca: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return usagef("--tls-client-ca %s: no PEM certificate in it", f.tlsClientCA)
			}
			opts.TLSConfig.ClientCAs = pool
			opts.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	st, err := buildStack(ctx, &f.pipelineFlags, f.prefetchEpochs, logger, reg)
	if err != nil {
		return err
	}
	defer st.Close()

	lis := f.preopened
	if lis == nil {
		if lis, err = listen("listen", f.listen, gid); err != nil {
			return err
		}
	}
	defer lis.Close()
	var mlis net.Listener
	if f.metricsListen != "" {
		if mlis, err = listen("metrics-listen", f.metricsListen, -1); err != nil {
			return err
		}
		defer mlis.Close()
	}
	for _, w := range exposure(lis.Addr(), opts.AuthToken != "", opts.TLSConfig != nil, f.tlsClientCA != "") {
		logger.Warn(w)
	}
	if mlis != nil && f.pprof && !isLoopback(mlis.Addr()) {
		logger.Warn(fmt.Sprintf("--pprof on %s, not a loopback address: anyone who reaches it can profile this process and read its memory layout; serve metrics on 127.0.0.1 or drop --pprof", mlis.Addr()))
	}
	others, err := otherWarnings(st, &f.pipelineFlags, clientAddr(f.listen, lis.Addr()))
	if err != nil {
		return err
	}
	for _, w := range append(others, budgetWarnings(st.loader, &f.pipelineFlags, f.prefetchEpochs)...) {
		logger.Warn(w.msg, w.args...)
	}

	keyFile := f.ticketKeyFile
	if keyFile == "" {
		keyFile = filepath.Join(f.cacheDir, "ticket.key")
	}
	if opts.TicketKey, err = flightsvc.LoadOrCreateKey(keyFile); err != nil {
		return err
	}
	opts.Source, opts.Actions, opts.Registerer = st.loader, st.loader, reg
	srv, err := flightsvc.New(opts)
	if err != nil {
		return err
	}
	location := scheme + "://" + lis.Addr().String()
	if lis.Addr().Network() == "unix" {
		location = "unix://" + lis.Addr().String()
		if err := shareSocket(lis.Addr().String(), gid); err != nil {
			return err
		}
	}
	logger.Info("loaderd serving", "location", location,
		"datasets", f.data.String(), "pipeline", f.pipeline, "seed", f.seed, "cache", f.cacheDir,
		"gpus", len(st.topo.Devices), "topology", st.topo.Source)
	if mlis != nil {
		logger.Info("metrics", "url", "http://"+mlis.Addr().String()+"/metrics")
	}
	if ready != nil {
		ready <- lis.Addr().String()
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return st.loader.Run(gctx) })
	g.Go(func() error { return srv.Serve(gctx, lis) })
	if mlis != nil {
		g.Go(func() error { return serveMetrics(gctx, mlis, reg, f.pprof) })
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil // SIGTERM or SIGINT: a clean exit
	}
	logger.Info("loaderd stopped")
	return err
}

// exposure returns the warnings serve logs for a Flight listener on addr:
// on a non-loopback address, a server that admits anyone (no token, no
// client certificates) gives every dataset to whoever reaches the port,
// and a token sent without TLS crosses the network in clear.
func exposure(addr net.Addr, token, useTLS, clientCerts bool) []string {
	if isLoopback(addr) {
		return nil
	}
	where := addr.String()
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		where += " (every interface)"
	}
	var out []string
	if !token && !clientCerts {
		scheme := "plain gRPC"
		if useTLS {
			scheme = "TLS without client certificates"
		}
		out = append(out, fmt.Sprintf("UNPROTECTED: serving on %s over %s with no --auth-token-file: anyone who can reach this port can read every dataset and run every action (precompute, evict). "+
			"Listen on 127.0.0.1, or give --auth-token-file with --tls-cert/--tls-key, or --tls-client-ca for mutual TLS", where, scheme))
	}
	if token && !useTLS {
		out = append(out, fmt.Sprintf("INSECURE: serving on %s without TLS: the bearer token and every batch cross the network in clear, where anyone on the path can read and replay them. Give --tls-cert and --tls-key", where))
	}
	return out
}

// isLoopback reports whether addr is a loopback TCP address (or not TCP at
// all, e.g. a Unix socket, which the file system guards).
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return !ok || ta.IP.IsLoopback()
}

// shareSocket lets the group gid (the cache's) connect to a Unix-domain
// socket (0660); without a group (gid < 0) the socket keeps the mode the
// umask gave it.
func shareSocket(path string, gid int) error {
	if gid < 0 {
		return nil
	}
	err := os.Chown(path, -1, gid)
	if err == nil {
		err = os.Chmod(path, 0o660)
	}
	if err != nil {
		return fmt.Errorf("--listen unix://%s: give the socket to group %d: %w", path, gid, err)
	}
	return nil
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
