package flightsvc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/service"
)

// fakeLocal serves the fake source's batches as plans: each batch's rows
// are written into a file of their own under dir (rows at 1 KiB offsets,
// in reverse order, so that a reader must use the offsets), named in the
// plan.
type fakeLocal struct {
	*fakeSource
	dir, token, boot string

	leases   atomic.Int64  // live: StreamPlans returned release, not called yet
	released chan struct{} // gets a value at each release
	holdLast chan struct{} // when set, StreamPlans waits on it before returning
	noLocal  error         // returned by Local; guarded by mu
}

func newFakeLocal(t *testing.T, n, h, w int) *fakeLocal {
	t.Helper()
	dir := t.TempDir()
	boot, err := os.ReadFile(bootIDPath)
	if err != nil {
		t.Fatalf("no boot id (%v): local streams need Linux", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "local"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "local", "token"), []byte("sesame\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &fakeLocal{fakeSource: newFakeSource(t, n, h, w), dir: dir, token: "sesame", boot: strings.TrimSpace(string(boot)),
		released: make(chan struct{}, 100)}
}

func (f *fakeLocal) Local() (service.LocalInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noLocal != nil {
		return service.LocalInfo{}, f.noLocal
	}
	return service.LocalInfo{CacheDir: f.dir, TokenFile: "local/token", Token: f.token, BootID: f.boot}, nil
}

var fakeFiles atomic.Int64

func (f *fakeLocal) StreamPlans(ctx context.Context, req service.Request, send func(*service.PlanBatch) error) (func(), error) {
	f.leases.Add(1)
	var once sync.Once
	release := func() {
		once.Do(func() {
			f.leases.Add(-1)
			f.released <- struct{}{}
		})
	}
	err := f.Stream(ctx, req, func(b *service.Batch) error {
		defer b.Release()
		name := fmt.Sprintf("local/b%d.bin", fakeFiles.Add(1))
		n := b.Rows()
		p := &service.PlanBatch{Index: b.Index, Label: b.Label, File: make([]string, n), Row: make([]int64, n), Offset: make([]int64, n)}
		buf := make([]byte, 1024*n+len(b.Images[0]))
		for r, img := range b.Images {
			slot := n - 1 - r
			copy(buf[1024*slot:], img)
			p.File[r], p.Row[r], p.Offset[r] = name, int64(slot), int64(1024*slot)
		}
		if err := os.WriteFile(filepath.Join(f.dir, filepath.FromSlash(name)), buf, 0o644); err != nil {
			return err
		}
		return send(p)
	})
	if err == nil && f.holdLast != nil {
		select {
		case <-f.holdLast:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	return release, err // with an error too: the plans sent are still read
}

// rowsOf fetches req and returns its rows, concatenated, and the stats.
func rowsOf(t *testing.T, cl *Client, req service.Request) ([]uint64, []int64, []byte, FetchStats) {
	t.Helper()
	var idx []uint64
	var lbl []int64
	var img bytes.Buffer
	st, err := cl.Fetch(testCtx(t), req, func(r arrow.RecordBatch) error {
		idx = append(idx, r.Column(0).(*array.Uint64).Uint64Values()...)
		lbl = append(lbl, r.Column(1).(*array.Int64).Int64Values()...)
		t, err := TensorsOf(r)
		if err != nil {
			return err
		}
		img.Write(t.Images.Data().([]uint8))
		return nil
	})
	if err != nil {
		t.Fatalf("Fetch %+v: %v", req, err)
	}
	return idx, lbl, img.Bytes(), st
}

// startUnixServer serves opts on a Unix-domain socket until the test ends.
func startUnixServer(t *testing.T, opts *Options) string {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "loaderd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Serve: %v", err)
		}
	})
	return "unix://" + sock
}

// TestLocalSameRecords: over TCP (proving the host with the headers) and
// over a Unix-domain socket, "auto" reads the cache in place and hands out
// the records the ordinary stream does, for every request shape.
func TestLocalSameRecords(t *testing.T) {
	f := newFakeLocal(t, 37, 4, 5)
	tcp, _ := startServer(t, &Options{Source: f})
	unix := startUnixServer(t, &Options{Source: f})
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	for _, addr := range []string{tcp, unix} {
		cl, err := Dial(testCtx(t), addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		checked, err := Dial(testCtx(t), addr, &ClientOptions{Allocator: mem})
		if err != nil {
			t.Fatal(err)
		}
		for _, req := range []service.Request{
			{Dataset: "train", BatchSize: 8, WorldSize: 1, Shuffle: true},
			{Dataset: "train", BatchSize: 5, WorldSize: 3, Rank: 2},
			{Dataset: "train", BatchSize: 4, WorldSize: 2, Rank: 1, DropLast: true, StartBatch: 2},
			{Dataset: "train", BatchSize: 100, WorldSize: 1},
			{Dataset: "train", BatchSize: 8, WorldSize: 1, StartBatch: 5}, // empty: 5 batches
		} {
			want := req
			want.Transport = service.TransportFlight
			wi, wl, wimg, wst := rowsOf(t, cl, want)
			gi, gl, gimg, gst := rowsOf(t, cl, req)
			if gst.Transport != service.TransportLocal || gst.Fallback != "" || wst.Transport != service.TransportFlight {
				t.Fatalf("%s %+v: transports %q (fallback %q) and %q; want local and flight", addr, req, gst.Transport, gst.Fallback, wst.Transport)
			}
			if fmt.Sprint(gi, gl) != fmt.Sprint(wi, wl) || !bytes.Equal(gimg, wimg) || gst.Rows != wst.Rows || gst.Batches != wst.Batches {
				t.Fatalf("%s %+v: local gives %v %v (%d bytes), flight %v %v (%d bytes)", addr, req, gi, gl, len(gimg), wi, wl, len(wimg))
			}
			if _, _, cimg, _ := rowsOf(t, checked, req); !bytes.Equal(cimg, wimg) {
				t.Fatalf("%s %+v: with the client's allocator, other bytes", addr, req)
			}
			raw, err := cl.Fetch(testCtx(t), req, nil)
			if err != nil || raw.Rows != wst.Rows || raw.Transport != service.TransportLocal {
				t.Fatalf("%s raw local fetch: %+v, %v", addr, raw, err)
			}
		}
		cl.Close()
		checked.Close()
	}
	if n := f.leases.Load(); n != 0 {
		t.Fatalf("%d leases not released after the streams", n)
	}
	waitReleased(t, f.fakeSource)
}

// TestLocalHoldsFilesUntilClientIsDone: the server releases a stream's
// files only once the client has read its last plan and half-closed.
func TestLocalHoldsFilesUntilClientIsDone(t *testing.T) {
	f := newFakeLocal(t, 20, 2, 2)
	addr, _ := startServer(t, &Options{Source: f})
	cl, err := Dial(testCtx(t), addr, &ClientOptions{Transport: service.TransportLocal})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rows := 0
	_, err = cl.Fetch(testCtx(t), service.Request{Dataset: "train", BatchSize: 6, WorldSize: 1}, func(r arrow.RecordBatch) error {
		rows += int(r.NumRows())
		if rows == 20 { // the last batch: all plans were sent long ago
			time.Sleep(50 * time.Millisecond)
			if n := f.leases.Load(); n != 1 {
				t.Errorf("at the client's last batch %d leases live, want 1", n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.released:
	case <-time.After(5 * time.Second):
		t.Fatal("lease not released after the client finished")
	}
}

// TestLocalRefused: a client that cannot prove it is on the server's host
// and can read the cache gets FailedPrecondition for a local stream, and
// "auto" falls back to the ordinary stream.
func TestLocalRefused(t *testing.T) {
	f := newFakeLocal(t, 10, 2, 2)
	addr, _ := startServer(t, &Options{Source: f})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fc := flight.NewFlightServiceClient(conn)
	local := &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(`{"dataset":"train","transport":"local"}`)}
	ctx := testCtx(t)
	withHeaders := func(kv ...string) context.Context { return metadata.AppendToOutgoingContext(ctx, kv...) }
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{name: "no headers over TCP", ctx: ctx, want: "header"},
		{name: "another host", ctx: withHeaders(HeaderBootID, "0000", HeaderCacheToken, "sesame"), want: "not on the server's host"},
		{name: "cannot read the cache", ctx: withHeaders(HeaderBootID, f.boot, HeaderCacheToken, "guess"), want: "cannot read"},
		{name: "doubled header", ctx: withHeaders(HeaderBootID, f.boot, HeaderCacheToken, "sesame", HeaderCacheToken, "sesame"), want: "exactly one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fc.GetFlightInfo(tc.ctx, local)
			wantCode(t, err, codes.FailedPrecondition, tc.want)
			_, err = fc.GetSchema(tc.ctx, local)
			wantCode(t, err, codes.FailedPrecondition, tc.want)
		})
	}
	// With the proof: the plan schema; DoGet of its ticket is refused (the
	// call's end would release the files too early).
	proof := withHeaders(HeaderBootID, f.boot, HeaderCacheToken, "sesame")
	info, err := fc.GetFlightInfo(proof, local)
	if err != nil {
		t.Fatal(err)
	}
	s, err := flight.DeserializeSchema(info.Schema, memory.DefaultAllocator)
	if err != nil || s.Field(2).Name != "file" || info.TotalRecords != 10 {
		t.Fatalf("local FlightInfo: schema %v (%v), %d records", s, err, info.TotalRecords)
	}
	wantCode(t, drainGet(fc.DoGet(proof, info.Endpoint[0].Ticket)), codes.InvalidArgument, "DoExchange")

	// DoExchange of an ordinary ticket, or without the proof.
	plain, err := fc.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(`{"dataset":"train","transport":"flight"}`)})
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, exchangeErr(proof, fc, plain.Endpoint[0].Ticket.Ticket), codes.InvalidArgument, "DoGet")
	wantCode(t, exchangeErr(ctx, fc, info.Endpoint[0].Ticket.Ticket), codes.FailedPrecondition, "header")
	wantCode(t, exchangeErr(proof, fc, []byte("forged")), codes.InvalidArgument, "ticket")
	_, err = fc.GetFlightInfo(ctx, &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: []byte(`{"dataset":"train","transport":"shm"}`)})
	wantCode(t, err, codes.InvalidArgument, "transport")

	// The clients: "local" fails, "auto" falls back, saying why once.
	var logs bytes.Buffer
	elsewhere := t.TempDir() // where this client wrongly thinks the cache is
	for _, mode := range []string{service.TransportLocal, service.TransportAuto} {
		cl, err := Dial(ctx, addr, &ClientOptions{Transport: mode, CacheDir: elsewhere, Logger: newTestLogger(&logs)})
		if err != nil {
			t.Fatal(err)
		}
		st, err := cl.Fetch(ctx, service.Request{Dataset: "train", BatchSize: 4, WorldSize: 1}, nil)
		if mode == service.TransportLocal {
			wantCode(t, err, codes.FailedPrecondition, "cannot read the server's cache")
		} else if err != nil || st.Transport != service.TransportFlight || st.Rows != 10 || !strings.Contains(st.Fallback, "cannot read") {
			t.Errorf("auto without a readable cache: %+v, %v; want the ordinary stream with the reason", st, err)
		}
		if mode == service.TransportAuto {
			if _, err := cl.Fetch(ctx, service.Request{Dataset: "train", BatchSize: 4, WorldSize: 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
		cl.Close()
	}
	if n := strings.Count(logs.String(), "streaming over Flight"); n != 1 || !strings.Contains(logs.String(), "cannot read") {
		t.Errorf("auto logged %d fallback lines, want 1 saying why:\n%s", n, logs.String())
	}
	if _, err := Dial(ctx, addr, &ClientOptions{Transport: "shm"}); !errors.Is(err, ErrTransport) {
		t.Errorf("Dial with transport shm = %v, want ErrTransport", err)
	}

	// A server whose cache cannot hold leases, and one without local streams.
	f.mu.Lock()
	f.noLocal = fmt.Errorf("fake: %w: no hard links", service.ErrNoLocal)
	f.mu.Unlock()
	cl, err := Dial(ctx, addr, &ClientOptions{Transport: service.TransportLocal})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	_, err = cl.Fetch(ctx, service.Request{Dataset: "train", BatchSize: 4, WorldSize: 1}, nil)
	wantCode(t, err, codes.FailedPrecondition, "no hard links")
	plainAddr, _ := startServer(t, &Options{Source: newFakeSource(t, 10, 2, 2)})
	cl2, err := Dial(ctx, plainAddr, &ClientOptions{Transport: service.TransportLocal})
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	_, err = cl2.Fetch(ctx, service.Request{Dataset: "train", BatchSize: 4, WorldSize: 1}, nil)
	wantCode(t, err, codes.FailedPrecondition, "serves no local streams")
}

// drainGet reads a DoGet stream to its end and returns its error.
func drainGet(st flight.FlightService_DoGetClient, err error) error {
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

func newTestLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func exchangeErr(ctx context.Context, fc flight.FlightServiceClient, ticket []byte) error {
	st, err := fc.DoExchange(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&flight.FlightData{FlightDescriptor: &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: ticket}}); err != nil {
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

// killedClientEnv makes TestKilledClientHelper stream locally from the
// address it holds, print "reading" after its first batch, and block.
const killedClientEnv = "FLIGHTSVC_KILLED_CLIENT"

func TestKilledClientHelper(t *testing.T) {
	addr := os.Getenv(killedClientEnv)
	if addr == "" {
		return // only the subprocess of TestLocalKilledClient runs this
	}
	cl, err := Dial(context.Background(), addr, &ClientOptions{Transport: service.TransportLocal})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.Fetch(context.Background(), service.Request{Dataset: "train", BatchSize: 2, WorldSize: 1}, func(arrow.RecordBatch) error {
		fmt.Println("reading")
		select {} // killed here
	})
	t.Fatal(err)
}

// TestLocalKilledClient: a client killed (SIGKILL) while it reads, before
// or after the server sent its last plan, releases its stream's files.
func TestLocalKilledClient(t *testing.T) {
	for _, when := range []string{"mid-stream", "after the last plan"} {
		t.Run(when, func(t *testing.T) {
			f := newFakeLocal(t, 10, 2, 2)
			if when == "mid-stream" {
				f.hold = make(chan struct{}) // the stream waits after its first plan
			}
			addr, _ := startServer(t, &Options{Source: f})
			cmd := exec.Command(os.Args[0], "-test.run=^TestKilledClientHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), killedClientEnv+"="+addr)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line := make([]byte, 7)
			if _, err := io.ReadFull(out, line); err != nil || string(line) != "reading" {
				cmd.Process.Kill()
				t.Fatalf("client said %q, %v", line, err)
			}
			if n := f.leases.Load(); n != 1 {
				t.Errorf("%d leases live while the client reads, want 1", n)
			}
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			select {
			case <-f.released:
			case <-time.After(10 * time.Second):
				t.Fatal("the killed client's lease was not released")
			}
			if n := f.leases.Load(); n != 0 {
				t.Errorf("%d leases live after the client died", n)
			}
		})
	}
}

// TestLocalStreamFailsMidway: a local stream whose source fails after its
// first batch hands that batch out, then the error, as DoGet does; the
// files stay leased until the client has read what came.
func TestLocalStreamFailsMidway(t *testing.T) {
	f := newFakeLocal(t, 20, 2, 2)
	f.streamErr = fmt.Errorf("fake: cat.jpg: %w", service.ErrDataLoss)
	addr, _ := startServer(t, &Options{Source: f})
	cl, err := Dial(testCtx(t), addr, &ClientOptions{Transport: service.TransportLocal})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rows := 0
	st, err := cl.Fetch(testCtx(t), service.Request{Dataset: "train", BatchSize: 6, WorldSize: 1}, func(r arrow.RecordBatch) error {
		time.Sleep(20 * time.Millisecond) // the server has failed by now
		if n := f.leases.Load(); n != 1 {
			t.Errorf("while the client reads the batch sent before the error, %d leases live, want 1", n)
		}
		rows += int(r.NumRows())
		return nil
	})
	wantCode(t, err, codes.DataLoss, "cat.jpg")
	if rows != 6 || st.Batches != 1 {
		t.Errorf("got %d rows in %d batches before the error, want the first batch", rows, st.Batches)
	}
	select {
	case <-f.released:
	case <-time.After(5 * time.Second):
		t.Fatal("lease not released after the failed stream")
	}
}

// TestLocalAfterServerRestart: a client that read a server's cache in place
// keeps doing so after the server restarts with a new token.
func TestLocalAfterServerRestart(t *testing.T) {
	f := newFakeLocal(t, 10, 2, 2)
	addr, _ := startServer(t, &Options{Source: f})
	cl, err := Dial(testCtx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := service.Request{Dataset: "train", BatchSize: 4, WorldSize: 1}
	for _, token := range []string{"sesame", "open"} {
		if err := os.WriteFile(filepath.Join(f.dir, "local", "token"), []byte(token+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		f.mu.Lock()
		f.token = token // as a restarted server would
		f.mu.Unlock()
		st, err := cl.Fetch(testCtx(t), req, nil)
		if err != nil || st.Transport != service.TransportLocal || st.Rows != 10 {
			t.Fatalf("token %s: %+v, %v; want 10 rows read in place", token, st, err)
		}
	}
}

// mapsUnder counts this process's mappings of files under dir.
func mapsUnder(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatalf("no /proc/self/maps (%v): local streams need Linux", err)
	}
	return strings.Count(string(b), " "+dir+"/")
}

// TestLocalUnmaps: a local stream maps the files its plans name while it
// runs and leaves no mapping behind, whether it ends, fails midway, its
// caller's callback fails, or its caller cancels.
func TestLocalUnmaps(t *testing.T) {
	f := newFakeLocal(t, 20, 4, 4)
	addr, _ := startServer(t, &Options{Source: f})
	cl, err := Dial(testCtx(t), addr, &ClientOptions{Transport: service.TransportLocal})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := service.Request{Dataset: "train", BatchSize: 6, WorldSize: 1}
	if n := mapsUnder(t, f.dir); n != 0 {
		t.Fatalf("%d mappings under the cache before any stream", n)
	}
	stop := errors.New("the caller stops")
	for _, tc := range []struct {
		name    string
		failing bool  // the source fails after its first batch
		ret     error // the callback's return at the first batch
		cancel  bool  // the caller cancels at the first batch
		want    codes.Code
	}{
		{name: "whole"},
		{name: "source fails", failing: true, want: codes.DataLoss},
		{name: "callback fails", ret: stop},
		{name: "cancelled", cancel: true, want: codes.Canceled},
	} {
		f.mu.Lock()
		f.streamErr = nil
		if tc.failing {
			f.streamErr = fmt.Errorf("fake: cat.jpg: %w", service.ErrDataLoss)
		}
		f.mu.Unlock()
		ctx, cancel := context.WithCancel(testCtx(t))
		mapped := -1
		_, err := cl.Fetch(ctx, req, func(r arrow.RecordBatch) error {
			if mapped < 0 {
				mapped = mapsUnder(t, f.dir)
			}
			if tc.cancel {
				cancel()
			}
			return tc.ret
		})
		cancel()
		switch {
		case tc.ret != nil:
			if !errors.Is(err, stop) {
				t.Fatalf("%s: Fetch returned %v, want the callback's error", tc.name, err)
			}
		case tc.want != codes.OK:
			if status.Code(StatusOf(err)) != tc.want && !(tc.cancel && errors.Is(err, context.Canceled)) {
				t.Fatalf("%s: Fetch returned %v, want %v", tc.name, err, tc.want)
			}
		case err != nil:
			t.Fatalf("%s: %v", tc.name, err)
		}
		if mapped < 1 {
			t.Fatalf("%s: %d mappings under the cache during the stream, want its files mapped", tc.name, mapped)
		}
		if n := mapsUnder(t, f.dir); n != 0 {
			t.Fatalf("%s: %d mappings under the cache after the stream", tc.name, n)
		}
	}
}

// TestLocalPread: where a file cannot be mapped, its rows are read with
// pread, and give the bytes of the ordinary stream.
func TestLocalPread(t *testing.T) {
	mapPlanFiles = false
	defer func() { mapPlanFiles = true }()
	f := newFakeLocal(t, 23, 4, 5)
	addr, _ := startServer(t, &Options{Source: f})
	cl, err := Dial(testCtx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := service.Request{Dataset: "train", BatchSize: 5, WorldSize: 2, Rank: 1, Shuffle: true}
	flight := req
	flight.Transport = service.TransportFlight
	wi, wl, wimg, _ := rowsOf(t, cl, flight)
	gi, gl, gimg, gst := rowsOf(t, cl, req)
	if gst.Transport != service.TransportLocal || fmt.Sprint(gi, gl) != fmt.Sprint(wi, wl) || !bytes.Equal(gimg, wimg) {
		t.Fatalf("read with pread (%s): %v %v (%d bytes), flight %v %v (%d bytes)", gst.Transport, gi, gl, len(gimg), wi, wl, len(wimg))
	}
}
