package flightsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
)

// arrowClient is arrow-go's own Flight client on addr.
func arrowClient(t *testing.T, addr string) flight.Client {
	t.Helper()
	c, err := flight.NewClientWithMiddleware(addr, nil, nil,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func cmd(s string) *flight.FlightDescriptor {
	return &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(s)}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v; want code %v", err, code)
	}
	if contains != "" && !strings.Contains(status.Convert(err).Message(), contains) {
		t.Fatalf("error %q does not mention %q", status.Convert(err).Message(), contains)
	}
}

// readAll reads a DoGet stream with a checked allocator and checks every row
// against the fake's deterministic content; it returns the indexes read.
func readAll(t *testing.T, f *fakeSource, st flight.FlightService_DoGetClient) []uint64 {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rdr, err := flight.NewRecordReader(st, ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer rdr.Release()
	var got []uint64
	for rdr.Next() {
		rec := rdr.RecordBatch()
		idx := rec.Column(0).(*array.Uint64)
		lbl := rec.Column(1).(*array.Int64)
		img, ok := rec.Column(2).(*arrowio.FixedShapeTensorArray)
		if !ok {
			t.Fatalf("image column is %T; want the fixed_shape_tensor extension array", rec.Column(2))
		}
		for r := 0; r < int(rec.NumRows()); r++ {
			i := idx.Value(r)
			got = append(got, i)
			if lbl.Value(r) != int64(i%5) {
				t.Fatalf("row %d label %d; want %d", r, lbl.Value(r), i%5)
			}
			row := img.TensorBytes(r)
			if len(row) != f.rowBytes() {
				t.Fatalf("row %d image %d bytes; want %d", r, len(row), f.rowBytes())
			}
			for j, v := range row {
				if v != pixel(i, j) {
					t.Fatalf("sample %d byte %d = %d; want %d", i, j, v, pixel(i, j))
				}
			}
		}
	}
	if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return got
}

func TestEndToEnd(t *testing.T) {
	arrowio.RegisterExtensionTypes()
	f := newFakeSource(t, 45, 8, 6) // 144-byte rows: copied pieces
	big := newFakeSource(t, 20, 32, 32)
	big.name = "big" // 3072-byte rows: lent to gRPC
	for _, src := range []*fakeSource{f, big} {
		t.Run(src.name, func(t *testing.T) {
			addr, _ := startServer(t, &Options{Source: src})
			c := arrowClient(t, addr)
			ctx := testCtx(t)
			tests := []struct {
				name string
				cmd  string
			}{
				{name: "defaults", cmd: `{"dataset":"%s"}`},
				{name: "batches of 8 no shuffle", cmd: `{"dataset":"%s","batch_size":8,"shuffle":false}`},
				{name: "rank 1 of 4 drop_last", cmd: `{"dataset":"%s","batch_size":2,"rank":1,"world_size":4,"drop_last":true}`},
				{name: "start_batch", cmd: `{"dataset":"%s","batch_size":4,"rank":2,"world_size":3,"start_batch":2}`},
				{name: "past the end", cmd: `{"dataset":"%s","batch_size":4,"start_batch":100}`},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					desc := cmd(fmt.Sprintf(tc.cmd, src.name))
					req, err := ParseRequest(desc.Cmd)
					if err != nil {
						t.Fatal(err)
					}
					var want []uint64
					for _, b := range src.batches(req) {
						want = append(want, b...)
					}
					info, err := c.GetFlightInfo(ctx, desc)
					if err != nil {
						t.Fatal(err)
					}
					if info.TotalRecords != int64(len(want)) || !info.Ordered || len(info.Endpoint) != 1 || len(info.Endpoint[0].Location) != 0 {
						t.Fatalf("FlightInfo total %d ordered %v endpoints %v; want %d, ordered, one without location",
							info.TotalRecords, info.Ordered, info.Endpoint, len(want))
					}
					schema, err := flight.DeserializeSchema(info.Schema, memory.DefaultAllocator)
					if err != nil {
						t.Fatal(err)
					}
					if !schema.Equal(src.schema) || !schema.Metadata().Equal(src.schema.Metadata()) {
						t.Fatalf("schema %v; want %v", schema, src.schema)
					}
					typ, ok := schema.Field(2).Type.(*arrowio.FixedShapeTensorType)
					if !ok || typ.ExtensionName() != "arrow.fixed_shape_tensor" || !strings.Contains(typ.Serialize(), `"dim_names":["H","W","C"]`) {
						t.Fatalf("image type %v; want fixed_shape_tensor with dim_names", schema.Field(2).Type)
					}
					sr, err := c.GetSchema(ctx, desc)
					if err != nil || !bytes.Equal(sr.Schema, info.Schema) {
						t.Fatalf("GetSchema = %v; want the FlightInfo's schema", err)
					}
					st, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
					if err != nil {
						t.Fatal(err)
					}
					got := readAll(t, src, st)
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("indexes %v; want %v", got, want)
					}
				})
			}
			waitReleased(t, src)
		})
	}
}

func TestBadRequests(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	big := newFakeSource(t, 20000, 224, 224)
	big.name = "big"
	addr, _ := startServer(t, &Options{Source: &twoSources{f, big}})
	c := arrowClient(t, addr)
	ctx := testCtx(t)
	tests := []struct {
		name     string
		desc     *flight.FlightDescriptor
		code     codes.Code
		contains string
	}{
		{name: "malformed", desc: cmd(`{"dataset":`), code: codes.InvalidArgument, contains: "JSON"},
		{name: "unknown field", desc: cmd(`{"dataset":"train","bogus":1}`), code: codes.InvalidArgument, contains: "bogus"},
		{name: "epoch type", desc: cmd(`{"dataset":"train","epoch":"0"}`), code: codes.InvalidArgument, contains: "epoch"},
		{name: "epoch range", desc: cmd(`{"dataset":"train","epoch":2147483648}`), code: codes.InvalidArgument, contains: "epoch"},
		{name: "batch_size", desc: cmd(`{"dataset":"train","batch_size":0}`), code: codes.InvalidArgument, contains: "batch_size"},
		{name: "rank", desc: cmd(`{"dataset":"train","rank":4,"world_size":4}`), code: codes.InvalidArgument, contains: "rank"},
		{name: "world_size", desc: cmd(`{"dataset":"train","world_size":65537}`), code: codes.InvalidArgument, contains: "world_size"},
		{name: "drop_last", desc: cmd(`{"dataset":"train","drop_last":"no"}`), code: codes.InvalidArgument, contains: "drop_last"},
		{name: "start_batch", desc: cmd(`{"dataset":"train","start_batch":-1}`), code: codes.InvalidArgument, contains: "start_batch"},
		{name: "shuffle", desc: cmd(`{"dataset":"train","shuffle":0}`), code: codes.InvalidArgument, contains: "shuffle"},
		{name: "gpu type", desc: cmd(`{"dataset":"train","gpu":0}`), code: codes.InvalidArgument, contains: "gpu"},
		{name: "unknown gpu", desc: cmd(`{"dataset":"train","gpu":"7"}`), code: codes.InvalidArgument, contains: "gpu"},
		{name: "unknown dataset", desc: cmd(`{"dataset":"nope"}`), code: codes.NotFound, contains: "nope"},
		{name: "path descriptor", desc: &flight.FlightDescriptor{Type: flight.DescriptorPATH, Path: []string{"train"}}, code: codes.InvalidArgument, contains: "descriptor"},
		// 20000 rows of 150528 bytes: 3 GB, over 2 GiB; 14264 rows fit.
		{name: "batch over 2 GiB", desc: cmd(`{"dataset":"big","batch_size":65536}`), code: codes.InvalidArgument, contains: "the largest batch_size that fits is 14264"},
		{name: "no descriptor", desc: nil, code: codes.InvalidArgument, contains: "descriptor"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.GetFlightInfo(ctx, tc.desc)
			wantCode(t, err, tc.code, tc.contains)
			_, err = c.GetSchema(ctx, tc.desc)
			wantCode(t, err, tc.code, tc.contains)
		})
	}
}

func doGetErr(ctx context.Context, c flight.Client, tk []byte) error {
	st, err := c.DoGet(ctx, &flight.Ticket{Ticket: tk})
	if err != nil {
		return err
	}
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func TestTickets(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	key := testKey(9)
	addr, _ := startServer(t, &Options{Source: f, TicketKey: key})
	c := arrowClient(t, addr)
	ctx := testCtx(t)
	info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train"}`))
	if err != nil {
		t.Fatal(err)
	}
	good := info.Endpoint[0].Ticket.Ticket
	modified := append([]byte(nil), good...)
	modified[5] ^= 1
	forged, err := signTicket(testKey(8), service.Request{Dataset: "train", BatchSize: 4, WorldSize: 1}, "fp1")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		ticket []byte
		code   codes.Code
	}{
		{name: "good", ticket: good, code: codes.OK},
		{name: "modified", ticket: modified, code: codes.InvalidArgument},
		{name: "forged", ticket: forged, code: codes.InvalidArgument},
		{name: "garbage", ticket: []byte("/../../etc/shadow"), code: codes.InvalidArgument},
		{name: "empty", ticket: nil, code: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, doGetErr(ctx, c, tc.ticket), tc.code, "")
		})
	}

	t.Run("survives restart", func(t *testing.T) {
		addr2, _ := startServer(t, &Options{Source: f, TicketKey: key})
		if err := doGetErr(ctx, arrowClient(t, addr2), good); err != nil {
			t.Fatalf("ticket after restart: %v", err)
		}
	})
	t.Run("stale", func(t *testing.T) {
		f.setFingerprint("fp2")
		defer f.setFingerprint("fp1")
		wantCode(t, doGetErr(ctx, c, good), codes.FailedPrecondition, "GetFlightInfo")
	})
	waitReleased(t, f)
}

func TestListFlights(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	addr, _ := startServer(t, &Options{Source: f})
	cl, err := Dial(testCtx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	infos, err := cl.ListFlights(testCtx(t))
	if err != nil || len(infos) != 1 {
		t.Fatalf("ListFlights = %v, %v; want one", infos, err)
	}
	info := infos[0]
	if string(info.FlightDescriptor.Cmd) != `{"dataset":"train"}` || info.TotalRecords != 10 {
		t.Fatalf("descriptor %s total %d; want {\"dataset\":\"train\"}, 10", info.FlightDescriptor.Cmd, info.TotalRecords)
	}
	wantMeta := `{"classes":["cat","dog"],"pipeline":"center_crop(size=4)","seed":7,"cached_epochs":[0,2]}`
	if string(info.AppMetadata) != wantMeta {
		t.Fatalf("app_metadata %s; want %s", info.AppMetadata, wantMeta)
	}
	// The listed descriptor is a valid request for epoch 0.
	fi, err := cl.Flight().GetFlightInfo(testCtx(t), info.FlightDescriptor)
	if err != nil || fi.TotalRecords != 10 {
		t.Fatalf("GetFlightInfo(listed) = %v, %v", fi, err)
	}
}

func TestClientFetch(t *testing.T) {
	f := newFakeSource(t, 50, 16, 16)
	addr, _ := startServer(t, &Options{Source: f})
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	cl, err := Dial(testCtx(t), "grpc://"+addr, &ClientOptions{Allocator: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := service.Request{Dataset: "train", BatchSize: 8, WorldSize: 2, Rank: 1, Shuffle: true}
	var idx []uint64
	rec, err := cl.Fetch(testCtx(t), req, func(r arrow.RecordBatch) error {
		idx = append(idx, r.Column(0).(*array.Uint64).Uint64Values()...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := cl.Fetch(testCtx(t), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantRows := int64(25)
	for _, s := range []FetchStats{rec, raw} {
		if s.Batches != 4 || s.Rows != wantRows || s.Bytes < wantRows*16*16*3 || s.FirstBatch <= 0 || s.Elapsed < s.FirstBatch {
			t.Errorf("stats %+v; want 4 batches, %d rows", s, wantRows)
		}
	}
	if rec.Bytes != raw.Bytes {
		t.Errorf("record mode counted %d bytes, raw mode %d", rec.Bytes, raw.Bytes)
	}
	if len(idx) != 25 || idx[0] != 48 {
		t.Errorf("indexes %v; want 25 from 48 down", idx)
	}
	stopErr := errors.New("enough")
	if _, err := cl.Fetch(testCtx(t), req, func(arrow.RecordBatch) error { return stopErr }); !errors.Is(err, stopErr) {
		t.Errorf("Fetch with failing fn = %v; want its error", err)
	}
	waitReleased(t, f)
	if _, err := Dial(testCtx(t), "http://x", nil); !errors.Is(err, ErrBadAddr) {
		t.Errorf("Dial(http://x) = %v; want ErrBadAddr", err)
	}
}

func TestMaxStreams(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	f.hold = make(chan struct{})
	f.started = make(chan struct{})
	addr, _ := startServer(t, &Options{Source: f, MaxStreams: 1})
	c := arrowClient(t, addr)
	ctx := testCtx(t)
	info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":2}`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil { // the schema: the stream is running
		t.Fatal(err)
	}
	<-f.started
	wantCode(t, doGetErr(ctx, c, info.Endpoint[0].Ticket.Ticket), codes.ResourceExhausted, "")
	close(f.hold)
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
	}
	// The slot is free again once the stream ended.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := doGetErr(ctx, c, info.Endpoint[0].Ticket.Ticket)
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("DoGet after the first stream ended: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
	waitReleased(t, f)
}

func TestCancellation(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	f.hold = make(chan struct{})
	f.ctxDone = make(chan struct{})
	addr, _ := startServer(t, &Options{Source: f})
	c := arrowClient(t, addr)
	info, err := c.GetFlightInfo(testCtx(t), cmd(`{"dataset":"train","batch_size":2}`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	st, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // schema, first batch
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	select {
	case <-f.ctxDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the Source did not see the stream's ctx done within 5s of the client's cancel")
	}
	waitReleased(t, f)
}

func TestAuth(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	addr, _ := startServer(t, &Options{Source: f, AuthToken: "s3cret"})
	c := arrowClient(t, addr)
	tests := []struct {
		name    string
		headers []string
		code    codes.Code
	}{
		{name: "missing", code: codes.Unauthenticated},
		{name: "good", headers: []string{"Bearer s3cret"}, code: codes.OK},
		{name: "scheme lower case", headers: []string{"bearer s3cret"}, code: codes.OK},
		{name: "scheme upper case", headers: []string{"BEARER s3cret"}, code: codes.OK},
		{name: "wrong token", headers: []string{"Bearer s3cre"}, code: codes.Unauthenticated},
		{name: "longer token", headers: []string{"Bearer s3cret2"}, code: codes.Unauthenticated},
		{name: "two headers", headers: []string{"Bearer s3cret", "Bearer s3cret"}, code: codes.Unauthenticated},
		{name: "no scheme", headers: []string{"s3cret"}, code: codes.Unauthenticated},
		{name: "basic", headers: []string{"Basic s3cret"}, code: codes.Unauthenticated},
		{name: "empty", headers: []string{""}, code: codes.Unauthenticated},
		{name: "scheme only", headers: []string{"Bearer "}, code: codes.Unauthenticated},
		{name: "long junk", headers: []string{"Bearer " + strings.Repeat("\\x%~ ", 2000)}, code: codes.Unauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			for _, h := range tc.headers {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", h)
			}
			_, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train"}`))
			wantCode(t, err, tc.code, "")
			hs, err := c.Handshake(ctx)
			if err == nil {
				_ = hs.Send(&flight.HandshakeRequest{ProtocolVersion: 1}) // io.EOF if refused: Recv has the status
				_, err = hs.Recv()
			}
			wantCode(t, err, tc.code, "")
			as, err := c.DoAction(ctx, &flight.Action{Type: ActionTopology})
			if err == nil {
				_, err = as.Recv()
			}
			if tc.code == codes.OK {
				wantCode(t, err, codes.Unimplemented, "") // no Actions configured
			} else {
				wantCode(t, err, tc.code, "")
			}
		})
	}
	t.Run("client token", func(t *testing.T) {
		cl, err := Dial(testCtx(t), addr, &ClientOptions{Token: "s3cret"})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if _, err := cl.Fetch(testCtx(t), service.Request{Dataset: "train", BatchSize: 4, WorldSize: 1}, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestErrorMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		code codes.Code
	}{
		{name: "invalid", err: fmt.Errorf("x: %w", service.ErrInvalid), code: codes.InvalidArgument},
		{name: "field", err: &service.FieldError{Field: "gpu", Reason: "none"}, code: codes.InvalidArgument},
		{name: "not found", err: fmt.Errorf("x: %w", service.ErrNotFound), code: codes.NotFound},
		{name: "stale", err: fmt.Errorf("x: %w", service.ErrStale), code: codes.FailedPrecondition},
		{name: "exhausted", err: fmt.Errorf("x: %w", service.ErrExhausted), code: codes.ResourceExhausted},
		{name: "unavailable", err: fmt.Errorf("x: %w", service.ErrUnavailable), code: codes.Unavailable},
		{name: "unreadable", err: fmt.Errorf("x: %w", service.ErrUnreadable), code: codes.Unavailable},
		{name: "data loss", err: fmt.Errorf("x: bad.jpg: %w", service.ErrDataLoss), code: codes.DataLoss},
		{name: "other", err: errors.New("disk on fire"), code: codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(StatusOf(tc.err)); got != tc.code {
				t.Fatalf("StatusOf(%v) code %v; want %v", tc.err, got, tc.code)
			}
			f := newFakeSource(t, 10, 2, 2)
			addr, _ := startServer(t, &Options{Source: f})
			c := arrowClient(t, addr)
			ctx := testCtx(t)
			info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":2}`))
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			f.streamErr = tc.err
			f.mu.Unlock()
			wantCode(t, doGetErr(ctx, c, info.Endpoint[0].Ticket.Ticket), tc.code, "")
			f.mu.Lock()
			f.planErr = tc.err
			f.mu.Unlock()
			_, err = c.GetFlightInfo(ctx, cmd(`{"dataset":"train"}`))
			wantCode(t, err, tc.code, "")
			waitReleased(t, f)
		})
	}
	if StatusOf(nil) != nil {
		t.Error("StatusOf(nil) != nil")
	}
	if got := status.Code(StatusOf(status.Error(codes.Aborted, "x"))); got != codes.Aborted {
		t.Errorf("StatusOf(Aborted) = %v", got)
	}
}

func TestPanicRecovery(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	f.panicPlan = true
	reg := prometheus.NewRegistry()
	var logs lockedBuffer
	addr, _ := startServer(t, &Options{Source: f, Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := arrowClient(t, addr)
	ctx := testCtx(t)
	_, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train"}`))
	wantCode(t, err, codes.Internal, "")
	if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "fake: plan panics") {
		t.Errorf("log %q does not report the panic", l)
	}
	f.mu.Lock()
	f.panicPlan = false
	f.mu.Unlock()
	if _, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train"}`)); err != nil {
		t.Fatalf("server after a panic: %v", err)
	}
	m, err := New(&Options{Source: f, Registerer: reg})
	if err == nil || m != nil {
		t.Error("New registered its metrics twice on one registry")
	}
}

func TestMetrics(t *testing.T) {
	f := newFakeSource(t, 20, 4, 4)
	reg := prometheus.NewRegistry()
	addr, _ := startServer(t, &Options{Source: f, Registerer: reg})
	cl, err := Dial(testCtx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Transport "auto" asks once (DoAction local-info) whether it may read
	// the cache in place; the fake source serves no local streams.
	st, err := cl.Fetch(testCtx(t), service.Request{Dataset: "train", BatchSize: 8, WorldSize: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Transport != service.TransportFlight || st.Fallback == "" {
		t.Errorf("Fetch on a server without local streams: transport %q, fallback %q", st.Transport, st.Fallback)
	}
	_, _ = cl.Info(testCtx(t), service.Request{Dataset: "nope", BatchSize: 8, WorldSize: 1})
	for _, tc := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{name: "batches", c: mustCollector(t, reg, "loaderd_batches_served_total"), want: 3},
		{name: "samples", c: mustCollector(t, reg, "loaderd_samples_served_total"), want: 20},
		{name: "streams active", c: mustCollector(t, reg, "loaderd_streams_active"), want: 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%s = %v; want %v", tc.name, got, tc.want)
		}
	}
	want := `
# HELP loaderd_requests_total Flight calls by method and gRPC status code.
# TYPE loaderd_requests_total counter
loaderd_requests_total{code="FailedPrecondition",method="DoAction"} 1
loaderd_requests_total{code="NotFound",method="GetFlightInfo"} 1
loaderd_requests_total{code="OK",method="DoGet"} 1
loaderd_requests_total{code="OK",method="GetFlightInfo"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "loaderd_requests_total"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(reg, "loaderd_stream_wait_seconds", "loaderd_bytes_served_total"); err != nil || n != 2 {
		t.Errorf("wait histogram and bytes counter: %d series, %v", n, err)
	}
	if st.Bytes == 0 {
		t.Error("no bytes fetched")
	}
}

// mustCollector finds the registered collector named name by gathering.
func mustCollector(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: "copy"}, func() float64 { return v })
		}
	}
	t.Fatalf("metric %s not registered", name)
	return nil
}

func TestNewOptions(t *testing.T) {
	if _, err := New(nil); !errors.Is(err, ErrNoSource) {
		t.Errorf("New(nil) = %v; want ErrNoSource", err)
	}
	f := newFakeSource(t, 1, 1, 1)
	for _, o := range []Options{
		{Source: f, MaxStreams: -1},
		{Source: f, TicketKey: []byte("short")},
	} {
		if _, err := New(&o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	opts := &Options{Source: f}
	if _, err := New(opts); err != nil || opts.MaxStreams != 0 || opts.TicketKey != nil {
		t.Errorf("New wrote into the caller's options: %+v, %v", opts, err)
	}
}

// lockedBuffer is an io.Writer safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// twoSources serves the datasets of a and b.
type twoSources struct{ a, b *fakeSource }

func (s *twoSources) pick(name string) *fakeSource {
	if name == s.b.name {
		return s.b
	}
	return s.a
}

func (s *twoSources) Datasets(ctx context.Context) ([]service.DatasetInfo, error) {
	a, _ := s.a.Datasets(ctx)
	b, _ := s.b.Datasets(ctx)
	return append(a, b...), nil
}

func (s *twoSources) Plan(ctx context.Context, req service.Request) (service.Plan, error) {
	return s.pick(req.Dataset).Plan(ctx, req)
}

func (s *twoSources) Stream(ctx context.Context, req service.Request, send func(*service.Batch) error) error {
	return s.pick(req.Dataset).Stream(ctx, req, send)
}

// TestBatchBytes judges batch sizes on the batches a request really holds
// (SPEC §4): batch_size 65536 over a few samples is one small batch, while
// a record batch over 2 GiB is refused with the largest batch_size that
// fits, for uint8 rows and for normalize's float32 ones.
func TestBatchBytes(t *testing.T) {
	small := newFakeSource(t, 10, 224, 224)
	normalized := newFakeSource(t, 5000, 224, 224)
	normalized.name = "normalized"
	var err error
	normalized.schema, err = arrowio.NewSchema(arrowio.ImageSpec(224, 224, true), nil)
	if err != nil {
		t.Fatal(err)
	}
	most, err := arrowio.MaxBatchRows(normalized.schema, maxRecordBatch-flightDataFraming, 65536)
	if err != nil {
		t.Fatal(err)
	}
	if most < 3000 || most >= 4000 { // 602112-byte rows: 2^31/602112 = 3566
		t.Fatalf("float32 224×224 rows: %d fit in 2 GiB; want about 3566", most)
	}
	addr, _ := startServer(t, &Options{Source: &twoSources{small, normalized}})
	c := arrowClient(t, addr)
	ctx := testCtx(t)

	info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":65536}`))
	if err != nil {
		t.Fatalf("batch_size 65536 over 10 samples: %v; want one batch of 10", err)
	}
	st, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, small, st); len(got) != 10 || info.TotalRecords != 10 {
		t.Fatalf("batch_size 65536 over 10 samples: %d rows, total_records %d; want 10", len(got), info.TotalRecords)
	}

	for _, tc := range []struct {
		name string
		cmd  string
		ok   bool
	}{
		{name: "fits", cmd: fmt.Sprintf(`{"dataset":"normalized","batch_size":%d}`, most), ok: true},
		{name: "one row over", cmd: fmt.Sprintf(`{"dataset":"normalized","batch_size":%d}`, most+1)},
		// The last batch of a rank is what remains: 5000 samples over 2
		// ranks are 2500 each, one batch whatever batch_size says.
		{name: "few rows per rank", cmd: `{"dataset":"normalized","batch_size":65536,"world_size":2}`, ok: true},
		// start_batch 1 leaves the rank's short last batch: 5000 - 3560 rows.
		{name: "short last batch", cmd: `{"dataset":"normalized","batch_size":3560,"start_batch":1}`, ok: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.GetFlightInfo(ctx, cmd(tc.cmd))
			if tc.ok {
				if err != nil {
					t.Fatalf("GetFlightInfo: %v; want accepted", err)
				}
				return
			}
			wantCode(t, err, codes.InvalidArgument, fmt.Sprintf("the largest batch_size that fits is %d", most))
		})
	}
}
