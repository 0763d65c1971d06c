package flightsvc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/experimental"

	"github.com/loaderd/loaderd/service"
)

// ErrBadAddr reports an address Dial cannot use.
var ErrBadAddr = errors.New("flightsvc: bad address")

// ClientOptions configure Dial; the zero value is a plain-text client
// without a token.
type ClientOptions struct {
	Token     string           // sent as "authorization: Bearer <token>" when set
	TLS       *tls.Config      // nil means plain gRPC (grpc://)
	Allocator memory.Allocator // builds the records Fetch hands out; nil means Go memory
	// Transport is how Fetch streams a request that does not say
	// (service.Request.Transport ""): "auto" or "" (local when the server
	// is on this host and this process can read its cache, SPEC §9; else
	// the ordinary stream), "local" or "flight".
	Transport string
	// CacheDir is where this process sees the server's cache directory
	// when not at the path the server reports (a container's mount); ""
	// means the server's path.
	CacheDir string
	// Logger gets the one line saying why "auto" streams over Flight; nil
	// means slog.Default().
	Logger *slog.Logger
	// GatherThreads is how many goroutines copy a local stream's rows into
	// each batch; 0 means min(4, GOMAXPROCS).
	GatherThreads int
}

// A Client calls a loaderd Flight server. It is safe for concurrent use.
type Client struct {
	opts  ClientOptions
	log   *slog.Logger
	conn  *grpc.ClientConn
	fc    flight.FlightServiceClient
	reuse reuseAllocator // local streams' batch buffers

	mu       sync.Mutex         // guards the fields below
	peers    map[string]*Client // other endpoint locations, by URI
	door     *localDoor         // how to read the server's cache in place, once known
	doorErr  error              // why this client cannot (wraps service.ErrNoLocal)
	fellBack map[string]bool    // the reasons "auto" fell back for, logged once each
}

// FetchStats describes one Fetch.
type FetchStats struct {
	Batches, Rows, Bytes int64         // Bytes: IPC body bytes received (local: index, label and image bytes gathered)
	FirstBatch, Elapsed  time.Duration // from the start of Fetch
	Transport            string        // how the batches came: "flight" or "local"
	Fallback             string        // why "auto" did not stream locally, "" when it did or was not asked to
}

// bearer is the per-call credential carrying the token.
type bearer struct {
	header string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": b.header}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// target strips a Flight URI scheme from addr and says whether it asks for TLS.
func target(addr string) (string, bool, error) {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return addr, false, nil
	}
	switch scheme {
	case "grpc", "grpc+tcp":
		return rest, false, nil
	case "grpc+tls":
		return rest, true, nil
	case "unix", "grpc+unix":
		if !strings.HasPrefix(rest, "/") {
			return "", false, fmt.Errorf("%w: %q: want unix:///absolute/path.sock", ErrBadAddr, addr)
		}
		return "unix://" + rest, false, nil
	}
	return "", false, fmt.Errorf("%w: %q: scheme %q, want grpc, grpc+tcp, grpc+tls or unix", ErrBadAddr, addr, scheme)
}

// Dial connects to the Flight server at addr ("host:port", or a grpc://,
// grpc+tcp://, grpc+tls:// or unix:// (grpc+unix://) URI). The connection is made lazily; ctx only
// bounds the setup.
func Dial(ctx context.Context, addr string, opts *ClientOptions) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var o ClientOptions
	if opts != nil {
		o = *opts
	}
	host, wantTLS, err := target(addr)
	if err != nil {
		return nil, err
	}
	if host == "" {
		return nil, fmt.Errorf("%w: %q: no host", ErrBadAddr, addr)
	}
	if wantTLS && o.TLS == nil {
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS.Clone())
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(windowSize),
		grpc.WithInitialConnWindowSize(windowSize),
		grpc.WithReadBufferSize(readBufSize),
		experimental.WithBufferPool(&dirtyPool{}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxRecvMsgSize)),
	}
	if o.Token != "" {
		dopts = append(dopts, grpc.WithPerRPCCredentials(bearer{header: "Bearer " + o.Token, secure: o.TLS != nil}))
	}
	conn, err := grpc.NewClient(host, dopts...)
	if err != nil {
		return nil, fmt.Errorf("flightsvc: dial %s: %w", addr, err)
	}
	switch o.Transport {
	case "", service.TransportAuto, service.TransportLocal, service.TransportFlight:
	default:
		conn.Close()
		return nil, fmt.Errorf("%w: %q", ErrTransport, o.Transport)
	}
	lg := o.Logger
	if lg == nil {
		lg = slog.Default()
	}
	return &Client{opts: o, log: lg, conn: conn, fc: flight.NewFlightServiceClient(conn)}, nil
}

// Close closes the connection and those Fetch opened to other locations.
func (c *Client) Close() error {
	c.mu.Lock()
	peers := c.peers
	c.peers = nil
	c.mu.Unlock()
	errs := []error{c.conn.Close()}
	for _, p := range peers {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// Flight returns the raw Flight client of c's connection.
func (c *Client) Flight() flight.FlightServiceClient { return c.fc }

// Descriptor is the CMD descriptor of req.
func Descriptor(req service.Request) (*flight.FlightDescriptor, error) {
	cmd, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("flightsvc: request: %w", err)
	}
	return &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: cmd}, nil
}

// Info asks for the FlightInfo of req.
func (c *Client) Info(ctx context.Context, req service.Request) (*flight.FlightInfo, error) {
	d, err := Descriptor(req)
	if err != nil {
		return nil, err
	}
	return c.fc.GetFlightInfo(ctx, d)
}

// ListFlights lists the served datasets.
func (c *Client) ListFlights(ctx context.Context) ([]*flight.FlightInfo, error) {
	st, err := c.fc.ListFlights(ctx, &flight.Criteria{})
	if err != nil {
		return nil, err
	}
	var out []*flight.FlightInfo
	for {
		info, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, info)
	}
}

// Action runs a DoAction verb and returns the bodies of its results.
func (c *Client) Action(ctx context.Context, typ string, body []byte) ([][]byte, error) {
	st, err := c.fc.DoAction(ctx, &flight.Action{Type: typ, Body: body})
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		r, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, r.GetBody())
	}
}

// datasetBody is the body of an action on one dataset, or on every served
// dataset when it is "" (an empty body).
func datasetBody(dataset string) any {
	if dataset == "" {
		return nil
	}
	return struct {
		Dataset string `json:"dataset"`
	}{dataset}
}

// actionResult runs the action typ with body (nil: an empty body; else
// marshalled to JSON) and decodes its one result into T.
func actionResult[T any](ctx context.Context, c *Client, typ string, body any) (T, error) {
	var out T
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return out, fmt.Errorf("flightsvc: %s: %w", typ, err)
		}
	}
	res, err := c.Action(ctx, typ, raw)
	if err != nil {
		return out, err
	}
	if len(res) != 1 {
		return out, fmt.Errorf("flightsvc: %s: %d results, want 1", typ, len(res))
	}
	if err := json.Unmarshal(res[0], &out); err != nil {
		return out, fmt.Errorf("flightsvc: %s result: %w", typ, err)
	}
	return out, nil
}

// Rescan asks the server to list a dataset again now ("" for every served
// dataset) rather than wait for it to notice a change (SPEC §4), and
// returns each one's listing. Tickets planned before a change the rescan
// finds get FailedPrecondition; ask for the FlightInfo again.
func (c *Client) Rescan(ctx context.Context, dataset string) (service.RescanResult, error) {
	return actionResult[service.RescanResult](ctx, c, ActionRescan, datasetBody(dataset))
}

// CacheStatus asks which epochs the server's cache holds of a dataset (""
// for every served dataset): the cache-status action. Each dataset's Other
// lists the epochs the server does not read.
func (c *Client) CacheStatus(ctx context.Context, dataset string) (service.CacheStatus, error) {
	return actionResult[service.CacheStatus](ctx, c, ActionCacheStatus, datasetBody(dataset))
}

// An Eviction says what Evict frees of a dataset: Epochs, and with Other
// the epochs the server does not read (CacheStatus's Other: other pipelines
// or seeds, earlier listings of the dataset); or, with All alone, every
// epoch of it in the cache.
type Eviction struct {
	Dataset string `json:"dataset"`
	Epochs  []int  `json:"epochs,omitempty"`
	Other   bool   `json:"other,omitempty"`
	All     bool   `json:"all,omitempty"`
}

// Evict frees what ev names from the server's cache (the evict action) and
// returns the cache status after it; an epoch being streamed is freed when
// its streams end (its state is evicting until then).
func (c *Client) Evict(ctx context.Context, ev Eviction) (service.CacheStatus, error) {
	return actionResult[service.CacheStatus](ctx, c, ActionEvict, ev)
}

// DatasetErrors lists the samples of a dataset the server found
// undecodable so far (the dataset-errors action), by index.
func (c *Client) DatasetErrors(ctx context.Context, dataset string) ([]service.SampleError, error) {
	return actionResult[[]service.SampleError](ctx, c, ActionDatasetErrors, datasetBody(dataset))
}

// Fetch streams req. fn is called with each record, valid only during the
// call (Retain it to keep it). With fn nil, Fetch runs raw: it counts rows
// and bytes without building records (for throughput measurements).
//
// req.Transport (or, when "", ClientOptions.Transport) picks the way:
// "flight" is GetFlightInfo, then DoGet on each endpoint in order (an
// endpoint without a location is served by c). "local" reads the server's
// cache in place (SPEC §9): the server sends plans naming the shard files,
// Fetch maps them and copies each batch's rows into one buffer; it fails
// with FailedPrecondition (wrapping service.ErrNoLocal) when the server is
// on another host or its cache is not readable here. "auto", the default,
// is local when it can be and flight otherwise, logging why once per
// reason (FetchStats.Fallback says it too). The records are the same
// either way, byte for byte.
func (c *Client) Fetch(ctx context.Context, req service.Request, fn func(arrow.RecordBatch) error) (FetchStats, error) {
	mode := req.Transport
	if mode == "" {
		mode = c.opts.Transport
	}
	switch mode {
	case service.TransportFlight:
		req.Transport = ""
		return c.fetchFlight(ctx, req, fn)
	case service.TransportLocal:
		door, err := c.localDoor(ctx)
		if err != nil {
			return FetchStats{}, StatusOf(err)
		}
		return c.fetchLocal(ctx, req, fn, door)
	case "", service.TransportAuto:
		return c.fetchAuto(ctx, req, fn)
	}
	return FetchStats{}, fmt.Errorf("%w: %q", ErrTransport, mode)
}

// fetchFlight is Fetch over DoGet.
func (c *Client) fetchFlight(ctx context.Context, req service.Request, fn func(arrow.RecordBatch) error) (FetchStats, error) {
	start := time.Now()
	stats := FetchStats{Transport: service.TransportFlight}
	info, err := c.Info(ctx, req)
	if err != nil {
		return stats, err
	}
	for _, ep := range info.GetEndpoint() {
		peer, err := c.peerFor(ctx, ep)
		if err != nil {
			return stats, err
		}
		if fn == nil {
			err = peer.getRaw(ctx, ep.GetTicket(), start, &stats)
		} else {
			err = peer.getRecords(ctx, ep.GetTicket(), fn, start, &stats)
		}
		if err != nil {
			stats.Elapsed = time.Since(start)
			return stats, err
		}
	}
	stats.Elapsed = time.Since(start)
	return stats, nil
}

// peerFor is the client serving ep: c itself when ep has no location (or
// the reuse-connection one), else a connection to its first location.
func (c *Client) peerFor(ctx context.Context, ep *flight.FlightEndpoint) (*Client, error) {
	locs := ep.GetLocation()
	if len(locs) == 0 || locs[0].GetUri() == "" || locs[0].GetUri() == flight.LocationReuseConnection {
		return c, nil
	}
	uri := locs[0].GetUri()
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.peers[uri]; ok {
		return p, nil
	}
	p, err := Dial(ctx, uri, &c.opts)
	if err != nil {
		return nil, err
	}
	if c.peers == nil {
		c.peers = make(map[string]*Client)
	}
	c.peers[uri] = p
	return p, nil
}

// countingStream counts the batches and body bytes a record reader reads.
type countingStream struct {
	st    flight.FlightService_DoGetClient
	bytes int64
}

func (s *countingStream) Recv() (*flight.FlightData, error) {
	fd, err := s.st.Recv()
	if err == nil {
		s.bytes += int64(len(fd.GetDataBody()))
	}
	return fd, err
}

func (c *Client) getRecords(ctx context.Context, t *flight.Ticket, fn func(arrow.RecordBatch) error, start time.Time, stats *FetchStats) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream if fn fails
	st, err := c.fc.DoGet(ctx, t)
	if err != nil {
		return err
	}
	cs := &countingStream{st: st}
	var opts []ipc.Option
	if c.opts.Allocator != nil {
		opts = append(opts, ipc.WithAllocator(c.opts.Allocator))
	}
	rdr, err := flight.NewRecordReader(cs, opts...)
	if err != nil {
		return err
	}
	defer rdr.Release()
	for rdr.Next() {
		rec := rdr.RecordBatch()
		if stats.Batches == 0 {
			stats.FirstBatch = time.Since(start)
		}
		stats.Batches++
		stats.Rows += rec.NumRows()
		if err := fn(rec); err != nil {
			return err
		}
	}
	stats.Bytes += cs.bytes
	if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func (c *Client) getRaw(ctx context.Context, t *flight.Ticket, start time.Time, stats *FetchStats) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.fc.DoGet(ctx, t, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	for {
		var m rawFlightData
		err := st.RecvMsg(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		rows, isBatch, err := recordBatchRows(m.header)
		if err != nil {
			return err
		}
		if !isBatch {
			continue
		}
		if stats.Batches == 0 {
			stats.FirstBatch = time.Since(start)
		}
		stats.Batches++
		stats.Rows += rows
		stats.Bytes += m.bodyLen
	}
}
