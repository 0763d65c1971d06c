package flightsvc

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
)

// Local streams (SPEC §9). A client on the server's host asks for plans
// instead of pixels:
//
//  1. DoAction ActionLocalInfo → LocalInfo: the cache directory, the file
//     holding the token, the server's boot id.
//  2. GetFlightInfo of the request with "transport":"local", carrying the
//     headers HeaderBootID (the client's boot id) and HeaderCacheToken (the
//     token file's contents) unless it calls over a Unix-domain socket:
//     the plan schema (arrowio.PlanSchema), total_records, one endpoint.
//  3. DoExchange whose first message's descriptor is CMD = the endpoint's
//     ticket, with the same headers: the plan schema, one plan record per
//     training batch, then a plan of no rows, the end (also when the stream
//     fails midway). The client half-closes its side when it has read the
//     end and is done with the files; only then does the server end the
//     call, with the stream's status, and release the stream's lease. A
//     client that dies ends the call (its connection closes), releasing it
//     too.
//
// DoGet of a local ticket is InvalidArgument: its end would release the
// lease while the client still has plans to open.

// ActionLocalInfo is the DoAction verb describing the cache to local readers.
const ActionLocalInfo = "local-info"

// Headers a client on this host sends with a local request over TCP.
const (
	HeaderBootID     = "loaderd-boot-id"
	HeaderCacheToken = "loaderd-cache-token"
)

// LocalInfo is the result of ActionLocalInfo.
type LocalInfo struct {
	CacheDir  string `json:"cache_dir"`  // absolute, as the server sees it
	TokenFile string `json:"token_file"` // relative to cache_dir; its contents are the token
	BootID    string `json:"boot_id"`    // the server's kernel boot id
}

// localSource returns the Source as a LocalSource and its LocalInfo, or
// an error wrapping service.ErrNoLocal.
func (s *Server) localSource() (service.LocalSource, service.LocalInfo, error) {
	src, ok := s.opts.Source.(service.LocalSource)
	if !ok {
		return nil, service.LocalInfo{}, fmt.Errorf("flightsvc: %w: this server serves no local streams", service.ErrNoLocal)
	}
	info, err := src.Local()
	if err != nil {
		return nil, info, err
	}
	return src, info, nil
}

// checkLocal decides whether the caller may be served a local stream: it
// calls over a Unix-domain socket, or shows the server's boot id and the
// cache token. Otherwise the error wraps service.ErrNoLocal
// (FailedPrecondition) and says why.
func (s *Server) checkLocal(ctx context.Context) (service.LocalSource, error) {
	src, info, err := s.localSource()
	if err != nil {
		return nil, err
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil && p.Addr.Network() == "unix" {
		return src, nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	boot, token := md.Get(HeaderBootID), md.Get(HeaderCacheToken)
	switch {
	case len(boot) != 1 || len(token) != 1:
		return nil, fmt.Errorf("flightsvc: %w: over TCP a local stream needs exactly one %s and one %s header (the client's boot id and the contents of %s/%s)",
			service.ErrNoLocal, HeaderBootID, HeaderCacheToken, info.CacheDir, info.TokenFile)
	case info.BootID == "" || boot[0] != info.BootID:
		return nil, fmt.Errorf("flightsvc: %w: the client is not on the server's host (boot id %q, the server's %q)", service.ErrNoLocal, boot[0], info.BootID)
	case subtle.ConstantTimeCompare([]byte(token[0]), []byte(info.Token)) != 1:
		return nil, fmt.Errorf("flightsvc: %w: wrong cache token: the client cannot read %s/%s (the cache's files; see --cache-group)",
			service.ErrNoLocal, info.CacheDir, info.TokenFile)
	}
	return src, nil
}

// localInfo answers ActionLocalInfo.
func (v *handler) localInfo(a *flight.Action, st flight.FlightService_DoActionServer) error {
	if len(a.GetBody()) != 0 {
		if _, err := strictObject(a.GetBody(), "action body"); err != nil {
			return err
		}
	}
	_, info, err := v.s.localSource()
	if err != nil {
		return err
	}
	return sendJSON(st, LocalInfo{CacheDir: info.CacheDir, TokenFile: info.TokenFile, BootID: info.BootID})
}

// DoExchange serves a local stream (see the top of this file).
func (v *handler) DoExchange(st flight.FlightService_DoExchangeServer) error {
	s := v.s
	if n := s.streams.Add(1); n > int64(s.opts.MaxStreams) {
		s.streams.Add(-1)
		return StatusOf(fmt.Errorf("flightsvc: %d streams already running (max %d): %w", n-1, s.opts.MaxStreams, service.ErrExhausted))
	}
	defer s.streams.Add(-1)
	s.metrics.streamsActive.Inc()
	defer s.metrics.streamsActive.Dec()

	ctx := st.Context()
	first, err := st.Recv()
	if err != nil {
		return err
	}
	d := first.GetFlightDescriptor()
	if d == nil || d.GetType() != flight.DescriptorCMD {
		return StatusOf(&service.FieldError{Field: "descriptor", Reason: "DoExchange takes a CMD descriptor holding the ticket of a local request"})
	}
	req, fingerprint, err := openTicket(s.opts.TicketKey, d.GetCmd())
	if err != nil {
		return StatusOf(err)
	}
	if req.Transport != service.TransportLocal {
		return StatusOf(fmt.Errorf("flightsvc: DoExchange serves local streams; read this ticket with DoGet: %w", service.ErrInvalid))
	}
	src, err := s.checkLocal(ctx)
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
	// The dataset may change between the plan and the stream: the Source
	// streams this listing or refuses (ErrStale).
	req.Fingerprint = fingerprint
	schema, err := arrowio.PlanSchema(p.Schema)
	if err != nil {
		return StatusOf(err)
	}
	w := flight.NewRecordWriter(st, ipc.WithSchema(schema))
	defer w.Close()
	last := time.Now()
	release, serr := src.StreamPlans(ctx, req, func(b *service.PlanBatch) error {
		s.metrics.streamWait.Observe(time.Since(last).Seconds())
		rec, err := arrowio.PlanRecord(memory.DefaultAllocator, schema, b.Index, b.Label, b.File, b.Row, b.Offset)
		if err != nil {
			return err
		}
		err = w.Write(rec)
		rec.Release()
		last = time.Now()
		if err == nil {
			s.metrics.localBatches.Inc()
			s.metrics.localSamples.Add(float64(b.Rows()))
		}
		return err
	})
	if release != nil {
		defer release()
	}
	if ctx.Err() != nil { // the client went away
		return StatusOf(ctx.Err())
	}
	// The end of the plans, whether the stream is complete or failed: the
	// client reads the plans it has, then half-closes and gets the status.
	end, err := arrowio.PlanRecord(memory.DefaultAllocator, schema, nil, nil, nil, nil, nil)
	if err != nil {
		return StatusOf(err)
	}
	err = w.Write(end)
	end.Release()
	if err != nil {
		return err
	}
	// The client reads the files named until it half-closes (or goes away).
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return StatusOf(serr)
			}
			return err
		}
	}
}
