package flightsvc

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
)

// Flow-control windows and message limits. A 256×224×224×3 batch is 38 MB.
const (
	windowSize     = 64 << 20
	maxMsgSize     = math.MaxUint32 // a gRPC message's length is a uint32
	writeBufSize   = 1 << 20
	maxRecvMsgSize = 16 << 20 // requests are small
	// readBufSize is the client's socket read buffer. Measured on loopback,
	// 1 client, cached photoset epoch (2 cores): 16 KiB 2.2 GB/s, 64 KiB
	// 2.55-2.59, 256 KiB 2.0, 1 MiB 1.9-2.0, 4 MiB 1.8-1.9, none 2.0-2.1: a
	// buffer that stays in cache between the read and gRPC's copy wins.
	readBufSize = 64 << 10
)

// Errors of the server's lifecycle.
var (
	ErrNoSource = errors.New("flightsvc: Options.Source is nil")
	ErrServing  = errors.New("flightsvc: Serve called twice")
)

// Options configure a Server. The zero value of each field means its
// default; New copies the struct.
type Options struct {
	Source  service.Source  // required
	Actions service.Actions // nil: DoAction answers Unimplemented
	// TicketKey signs tickets (see LoadOrCreateKey); nil means a random key,
	// so tickets do not survive a restart. At least 32 bytes otherwise.
	TicketKey  []byte
	MaxStreams int    // concurrent DoGet streams; 0 means 64
	AuthToken  string // "" means no authentication
	TLSConfig  *tls.Config
	Registerer prometheus.Registerer // nil: metrics are kept but not registered
	Logger     *slog.Logger          // nil means discard
	// DrainTimeout bounds how long Serve lets running calls finish once its
	// ctx is done; 0 means 30s.
	DrainTimeout time.Duration
	// Location is the URI endpoints name; "" means none ("this server").
	Location string
}

// A Server serves a Source over Arrow Flight.
type Server struct {
	opts      Options
	log       *slog.Logger
	metrics   *metrics
	grpc      *grpc.Server
	tokenHash [sha256.Size]byte

	draining atomic.Bool
	streams  atomic.Int64

	mu      sync.Mutex // guards addr and serving
	addr    net.Addr   // the listener's, once Serve has one
	serving bool       // Serve was called
}

// New builds a Server; it starts nothing until Serve.
func New(opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Source == nil {
		return nil, ErrNoSource
	}
	if o.MaxStreams == 0 {
		o.MaxStreams = 64
	}
	if o.MaxStreams < 0 {
		return nil, fmt.Errorf("flightsvc: MaxStreams %d < 0", o.MaxStreams)
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.TicketKey == nil:
		o.TicketKey = make([]byte, keyLen)
		if _, err := rand.Read(o.TicketKey); err != nil {
			return nil, fmt.Errorf("flightsvc: ticket key: %w", err)
		}
	case len(o.TicketKey) < keyLen:
		return nil, fmt.Errorf("flightsvc: TicketKey is %d bytes, want at least %d", len(o.TicketKey), keyLen)
	default:
		o.TicketKey = append([]byte(nil), o.TicketKey...)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("flightsvc: metrics: %w", err)
	}
	codec, err := newFlightCodec()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: o, log: o.Logger, metrics: m}
	if o.AuthToken != "" {
		s.tokenHash = sha256.Sum256([]byte(o.AuthToken))
	}
	gopts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(codec),
		grpc.InitialWindowSize(windowSize),
		grpc.InitialConnWindowSize(windowSize),
		grpc.WriteBufferSize(writeBufSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		// Find dead peers, so that their streams end and free their work.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
	}
	if o.TLSConfig != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(o.TLSConfig.Clone())))
	}
	s.grpc = grpc.NewServer(gopts...)
	flight.RegisterFlightServiceServer(s.grpc, &handler{s: s})
	return s, nil
}

// Addr is the address Serve listens on, nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Serve serves Flight on lis until ctx is done, then drains: new calls get
// Unavailable, running calls may finish for up to DrainTimeout, after which
// they are cancelled. It returns when every call has ended. A Server serves
// once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.mu.Lock()
	if s.serving {
		s.mu.Unlock()
		return ErrServing
	}
	s.serving = true
	s.addr = lis.Addr()
	s.mu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	select {
	case err := <-errc:
		s.grpc.Stop()
		return fmt.Errorf("flightsvc: serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("flight: draining", "streams", s.streams.Load(), "timeout", s.opts.DrainTimeout)
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.opts.DrainTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.log.Warn("flight: drain timeout, cancelling streams", "streams", s.streams.Load())
		s.grpc.Stop()
		<-stopped
	}
	if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("flightsvc: serve: %w", err)
	}
	return nil
}

// authorize checks the bearer token of a call (SPEC §4): exactly one
// authorization header, scheme "Bearer" in any case, constant-time compare.
func (s *Server) authorize(ctx context.Context) error {
	if s.opts.AuthToken == "" {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	if len(vals) != 1 {
		return status.Errorf(codes.Unauthenticated, "flightsvc: want exactly one authorization header, got %d", len(vals))
	}
	scheme, token, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return status.Error(codes.Unauthenticated, "flightsvc: authorization header is not \"Bearer <token>\"")
	}
	got := sha256.Sum256([]byte(strings.TrimLeft(token, " ")))
	if subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) != 1 {
		return status.Error(codes.Unauthenticated, "flightsvc: wrong token")
	}
	return nil
}

// admit is the common gate of every call: draining, then auth.
func (s *Server) admit(ctx context.Context) error {
	if s.draining.Load() {
		return status.Error(codes.Unavailable, "flightsvc: "+service.ErrUnavailable.Error())
	}
	return s.authorize(ctx)
}

// recovered turns a panic into Internal and logs it.
func (s *Server) recovered(method string, r any, err *error) {
	s.log.Error("flight: panic in handler", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = status.Errorf(codes.Internal, "flightsvc: internal error in %s", method)
}

// finish counts a call and logs it: server faults at Warn, the rest at Debug.
func (s *Server) finish(ctx context.Context, method string, start time.Time, err error) {
	code := status.Code(err)
	s.metrics.requests.WithLabelValues(method, code.String()).Inc()
	lvl := slog.LevelDebug
	switch code {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		lvl = slog.LevelWarn
	}
	s.log.Log(ctx, lvl, "flight: call", "method", method, "code", code.String(),
		"elapsed", time.Since(start), "err", err)
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	method, start := path.Base(info.FullMethod), time.Now()
	defer func() { s.finish(ctx, method, start, err) }()
	defer func() {
		if r := recover(); r != nil {
			resp = nil
			s.recovered(method, r, &err)
		}
	}()
	if err := s.admit(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	method, start := path.Base(info.FullMethod), time.Now()
	defer func() { s.finish(ss.Context(), method, start, err) }()
	defer func() {
		if r := recover(); r != nil {
			s.recovered(method, r, &err)
		}
	}()
	if err := s.admit(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// handler implements the Flight RPCs; methods not defined here answer
// Unimplemented.
type handler struct {
	flight.BaseFlightServer
	s *Server
}

// Handshake answers one handshake request (auth is the interceptor's).
func (v *handler) Handshake(st flight.FlightService_HandshakeServer) error {
	req, err := st.Recv()
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return st.Send(&flight.HandshakeResponse{ProtocolVersion: req.GetProtocolVersion()})
}

func parseDescriptor(d *flight.FlightDescriptor) (service.Request, error) {
	if d == nil {
		return service.Request{}, &service.FieldError{Field: "descriptor", Reason: "missing"}
	}
	if d.GetType() != flight.DescriptorCMD {
		return service.Request{}, &service.FieldError{Field: "descriptor.type",
			Reason: fmt.Sprintf("%s, want CMD with a JSON request", d.GetType())}
	}
	return ParseRequest(d.GetCmd())
}

// plan parses a descriptor and asks the Source for its plan.
func (v *handler) plan(ctx context.Context, d *flight.FlightDescriptor) (service.Request, service.Plan, error) {
	req, err := parseDescriptor(d)
	if err != nil {
		return req, service.Plan{}, err
	}
	p, err := v.s.opts.Source.Plan(ctx, req)
	if err != nil {
		return req, p, err
	}
	if p.Schema == nil {
		return req, p, fmt.Errorf("flightsvc: Source planned %q without a schema", req.Dataset)
	}
	if err := checkBatchBytes(req, p); err != nil {
		return req, p, err
	}
	if req.Transport == service.TransportLocal {
		if _, err := v.s.checkLocal(ctx); err != nil {
			return req, p, err
		}
		// A local stream's schema is its plans' (arrowio.PlanSchema).
		if p.Schema, err = arrowio.PlanSchema(p.Schema); err != nil {
			return req, p, err
		}
	}
	return req, p, nil
}

func (v *handler) endpoint(req service.Request, fingerprint string) (*flight.FlightEndpoint, error) {
	t, err := signTicket(v.s.opts.TicketKey, req, fingerprint)
	if err != nil {
		return nil, err
	}
	ep := &flight.FlightEndpoint{Ticket: &flight.Ticket{Ticket: t}}
	if v.s.opts.Location != "" {
		ep.Location = []*flight.Location{{Uri: v.s.opts.Location}}
	}
	return ep, nil
}

func (v *handler) GetFlightInfo(ctx context.Context, d *flight.FlightDescriptor) (*flight.FlightInfo, error) {
	req, p, err := v.plan(ctx, d)
	if err != nil {
		return nil, StatusOf(err)
	}
	ep, err := v.endpoint(req, p.Fingerprint)
	if err != nil {
		return nil, StatusOf(err)
	}
	return &flight.FlightInfo{
		Schema:           flight.SerializeSchema(p.Schema, memory.DefaultAllocator),
		FlightDescriptor: d,
		Endpoint:         []*flight.FlightEndpoint{ep},
		TotalRecords:     p.Records,
		TotalBytes:       -1,
		Ordered:          true,
	}, nil
}

func (v *handler) GetSchema(ctx context.Context, d *flight.FlightDescriptor) (*flight.SchemaResult, error) {
	_, p, err := v.plan(ctx, d)
	if err != nil {
		return nil, StatusOf(err)
	}
	return &flight.SchemaResult{Schema: flight.SerializeSchema(p.Schema, memory.DefaultAllocator)}, nil
}

// datasetMeta is the app_metadata of a ListFlights entry (SPEC §4).
type datasetMeta struct {
	Classes      []string `json:"classes"`
	Pipeline     string   `json:"pipeline"`
	Seed         uint64   `json:"seed"`
	CachedEpochs []int    `json:"cached_epochs"`
}

func (v *handler) ListFlights(_ *flight.Criteria, st flight.FlightService_ListFlightsServer) error {
	ds, err := v.s.opts.Source.Datasets(st.Context())
	if err != nil {
		return StatusOf(err)
	}
	for _, d := range ds {
		meta := datasetMeta{Classes: d.Classes, Pipeline: d.Pipeline, Seed: d.Seed, CachedEpochs: d.CachedEpochs}
		if meta.Classes == nil {
			meta.Classes = []string{}
		}
		if meta.CachedEpochs == nil {
			meta.CachedEpochs = []int{}
		}
		am, err := json.Marshal(meta)
		if err != nil {
			return StatusOf(err)
		}
		cmd, err := json.Marshal(struct {
			Dataset string `json:"dataset"`
		}{d.Name})
		if err != nil {
			return StatusOf(err)
		}
		info := &flight.FlightInfo{
			FlightDescriptor: &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: cmd},
			TotalRecords:     d.Samples,
			TotalBytes:       -1,
			Ordered:          true,
			AppMetadata:      am,
		}
		if d.Schema != nil {
			info.Schema = flight.SerializeSchema(d.Schema, memory.DefaultAllocator)
		}
		if err := st.Send(info); err != nil {
			return err
		}
	}
	return nil
}

func (v *handler) DoGet(t *flight.Ticket, st flight.FlightService_DoGetServer) error {
	s := v.s
	if n := s.streams.Add(1); n > int64(s.opts.MaxStreams) {
		s.streams.Add(-1)
		return status.Errorf(codes.ResourceExhausted, "flightsvc: %d streams already running (max %d): %s",
			n-1, s.opts.MaxStreams, service.ErrExhausted)
	}
	defer s.streams.Add(-1)
	s.metrics.streamsActive.Inc()
	defer s.metrics.streamsActive.Dec()

	ctx := st.Context()
	req, fingerprint, err := openTicket(s.opts.TicketKey, t.GetTicket())
	if err != nil {
		return StatusOf(err)
	}
	p, err := s.opts.Source.Plan(ctx, req)
	if err != nil {
		return StatusOf(err)
	}
	if p.Fingerprint != fingerprint {
		return StatusOf(ErrStaleTicket)
	}
	if req.Transport == service.TransportLocal {
		return StatusOf(fmt.Errorf("flightsvc: a local stream's plans are read with DoExchange, which holds the files until the client is done (SPEC §9): %w", service.ErrInvalid))
	}
	// The dataset may change between the plan and the stream: the Source
	// streams this listing or refuses (ErrStale).
	req.Fingerprint = fingerprint
	if p.Schema == nil {
		return status.Errorf(codes.Internal, "flightsvc: Source planned %q without a schema", req.Dataset)
	}
	if err := checkBatchBytes(req, p); err != nil {
		return StatusOf(err)
	}
	hdr, err := arrowio.SchemaMessage(p.Schema)
	if err != nil {
		return StatusOf(err)
	}
	if err := st.Send(&flight.FlightData{DataHeader: hdr}); err != nil {
		return err
	}
	last := time.Now()
	err = s.opts.Source.Stream(ctx, req, func(b *service.Batch) error {
		s.metrics.streamWait.Observe(time.Since(last).Seconds())
		err := v.sendBatch(st, p.Schema, b)
		last = time.Now()
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return StatusOf(err)
	}
	return nil
}

// sendBatch sends b as one FlightData; b.Release runs exactly once, when
// gRPC no longer reads the rows, or here if they never reached gRPC.
func (v *handler) sendBatch(st grpc.ServerStream, schema *arrow.Schema, b *service.Batch) error {
	if b == nil {
		return errors.New("flightsvc: Source sent a nil batch")
	}
	release := b.Release
	if release == nil {
		release = func() {}
	}
	msg, err := arrowio.BatchMessage(schema, b.Index, b.Label, b.Images)
	if err != nil {
		release()
		return err
	}
	f := &batchFrame{header: msg.Header, body: msg.Body, bodyLen: msg.BodyLen, release: release}
	err = st.SendMsg(f)
	if !f.taken {
		release()
	}
	if err != nil {
		return err
	}
	m := v.s.metrics
	m.batches.Inc()
	m.samples.Add(float64(b.Rows()))
	m.bytes.Add(float64(int64(len(msg.Header)) + msg.BodyLen))
	return nil
}
