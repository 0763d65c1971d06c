package flightsvc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/service"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "loaderd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	f := newFakeSource(t, 30, 16, 16)
	addr, _ := startServer(t, &Options{Source: f, AuthToken: "tok",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	req := service.Request{Dataset: "train", BatchSize: 8, WorldSize: 1}
	cl, err := Dial(testCtx(t), "grpc+tls://"+addr, &ClientOptions{Token: "tok", TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := cl.Fetch(testCtx(t), req, nil)
	if err != nil || st.Rows != 30 {
		t.Fatalf("Fetch over TLS = %+v, %v; want 30 rows", st, err)
	}
	for _, tc := range []struct {
		name string
		opts *ClientOptions
	}{
		{name: "plain text client", opts: &ClientOptions{Token: "tok"}},
		{name: "untrusted certificate", opts: &ClientOptions{Token: "tok", TLS: &tls.Config{MinVersion: tls.VersionTLS12}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, err := Dial(testCtx(t), addr, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close()
			ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
			defer cancel()
			if _, err := bad.Fetch(ctx, req, nil); status.Code(err) != codes.Unavailable {
				t.Fatalf("Fetch = %v; want Unavailable", err)
			}
		})
	}
	waitReleased(t, f)
}

// fakeActions records the calls it gets.
type fakeActions struct {
	mu    sync.Mutex
	calls []string
}

func (a *fakeActions) record(s string) {
	a.mu.Lock()
	a.calls = append(a.calls, s)
	a.mu.Unlock()
}

func (a *fakeActions) Precompute(_ context.Context, ds string, epochs []int, progress func(service.PrecomputeProgress) error) (service.PrecomputeSummary, error) {
	a.record(fmt.Sprintf("precompute %s %v", ds, epochs))
	if ds != "train" {
		return service.PrecomputeSummary{}, fmt.Errorf("fake: %q: %w", ds, service.ErrNotFound)
	}
	for done := int64(5); done <= 10; done += 5 {
		if err := progress(service.PrecomputeProgress{Dataset: ds, Epochs: epochs, Done: done, Total: 10}); err != nil {
			return service.PrecomputeSummary{}, err
		}
	}
	return service.PrecomputeSummary{Dataset: ds, Epochs: epochs, Computed: 10, Bytes: 1234}, nil
}

func (a *fakeActions) CacheStatus(_ context.Context, ds string) (service.CacheStatus, error) {
	a.record("cache-status " + ds)
	return service.CacheStatus{Datasets: []service.DatasetCache{{Dataset: "train",
		Epochs: []service.EpochStatus{{Epoch: 0, State: service.EpochComplete, Bytes: 100, Samples: 10}}}}}, nil
}

func (a *fakeActions) Evict(_ context.Context, ds string, epochs []int) (service.CacheStatus, error) {
	a.record(fmt.Sprintf("evict %s %v", ds, epochs))
	return service.CacheStatus{}, nil
}

func (a *fakeActions) DatasetErrors(_ context.Context, ds string) ([]service.SampleError, error) {
	a.record("dataset-errors " + ds)
	return []service.SampleError{{Index: 3, Path: "cat/3.jpg", Reason: "truncated"}}, nil
}

func (a *fakeActions) Topology(context.Context) (service.Topology, error) {
	a.record("topology")
	return service.Topology{Topology: json.RawMessage(`{"gpus":[]}`), Placement: json.RawMessage(`{}`)}, nil
}

func TestActions(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	t.Run("none", func(t *testing.T) {
		addr, _ := startServer(t, &Options{Source: f})
		cl, err := Dial(testCtx(t), addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		st, err := cl.Flight().ListActions(testCtx(t), &flight.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		if a, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("ListActions without Actions = %v, %v; want none", a, err)
		}
		_, err = cl.Action(testCtx(t), ActionTopology, nil)
		wantCode(t, err, codes.Unimplemented, "")
	})
	acts := &fakeActions{}
	addr, _ := startServer(t, &Options{Source: f, Actions: acts})
	cl, err := Dial(testCtx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	st, err := cl.Flight().ListActions(testCtx(t), &flight.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		a, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if a.Description == "" {
			t.Errorf("action %s has no description", a.Type)
		}
		names = append(names, a.Type)
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[cache-status dataset-errors evict precompute topology]" {
		t.Errorf("ListActions = %v", names)
	}

	tests := []struct {
		name     string
		typ      string
		body     string
		want     []string // result bodies
		code     codes.Code
		contains string
		call     string
	}{
		{name: "precompute", typ: ActionPrecompute, body: `{"dataset":"train","epochs":[1,2]}`, call: "precompute train [1 2]",
			want: []string{
				`{"dataset":"train","epochs":[1,2],"done":5,"total":10,"images_per_sec":0}`,
				`{"dataset":"train","epochs":[1,2],"done":10,"total":10,"images_per_sec":0}`,
				`{"dataset":"train","epochs":[1,2],"computed":10,"cached":0,"seconds":0,"images_per_sec":0,"bytes":1234}`}},
		{name: "precompute unknown dataset", typ: ActionPrecompute, body: `{"dataset":"x","epochs":[0]}`, code: codes.NotFound, call: "precompute x [0]"},
		{name: "precompute no epochs", typ: ActionPrecompute, body: `{"dataset":"train"}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "precompute bad epoch", typ: ActionPrecompute, body: `{"dataset":"train","epochs":[-1]}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "precompute epochs type", typ: ActionPrecompute, body: `{"dataset":"train","epochs":"0-9"}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "cache-status empty body", typ: ActionCacheStatus, call: "cache-status ",
			want: []string{`{"datasets":[{"dataset":"train","epochs":[{"epoch":0,"state":"complete","bytes":100,"samples":10}]}]}`}},
		{name: "cache-status dataset", typ: ActionCacheStatus, body: `{"dataset":"train"}`, call: "cache-status train",
			want: []string{`{"datasets":[{"dataset":"train","epochs":[{"epoch":0,"state":"complete","bytes":100,"samples":10}]}]}`}},
		{name: "cache-status unknown field", typ: ActionCacheStatus, body: `{"epochs":[1]}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "evict", typ: ActionEvict, body: `{"dataset":"train","epochs":[0]}`, call: "evict train [0]", want: []string{`{"datasets":[]}`}},
		{name: "evict no dataset", typ: ActionEvict, body: `{"epochs":[0]}`, code: codes.InvalidArgument, contains: "dataset"},
		{name: "dataset-errors", typ: ActionDatasetErrors, body: `{"dataset":"train"}`, call: "dataset-errors train",
			want: []string{`[{"index":3,"path":"cat/3.jpg","reason":"truncated"}]`}},
		{name: "dataset-errors malformed", typ: ActionDatasetErrors, body: `{"dataset":`, code: codes.InvalidArgument},
		{name: "topology", typ: ActionTopology, call: "topology", want: []string{`{"topology":{"gpus":[]},"placement":{}}`}},
		{name: "unknown action", typ: "reboot", code: codes.InvalidArgument, contains: "reboot"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acts.mu.Lock()
			acts.calls = nil
			acts.mu.Unlock()
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			got, err := cl.Action(testCtx(t), tc.typ, body)
			if tc.code != codes.OK {
				wantCode(t, err, tc.code, tc.contains)
			} else if err != nil {
				t.Fatal(err)
			}
			for i := range max(len(got), len(tc.want)) {
				if i >= len(got) || i >= len(tc.want) || string(got[i]) != tc.want[i] {
					t.Fatalf("results %q; want %q", got, tc.want)
				}
			}
			acts.mu.Lock()
			calls := fmt.Sprint(acts.calls)
			acts.mu.Unlock()
			if want := fmt.Sprint([]string{tc.call}); tc.call != "" && calls != want || tc.call == "" && calls != "[]" {
				t.Errorf("Actions calls %s; want %q", calls, tc.call)
			}
			for _, g := range got {
				if !json.Valid(g) {
					t.Errorf("result %q is not JSON", g)
				}
			}
		})
	}
}

func TestDrain(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	f.hold = make(chan struct{})
	f.started = make(chan struct{})
	addr, stop := startServer(t, &Options{Source: f, DrainTimeout: time.Minute})
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
	<-f.started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// New calls are refused while the running stream drains.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train"}`))
		if status.Code(err) == codes.Unavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetFlightInfo while draining = %v; want Unavailable", err)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) while a stream was running", err)
	default:
	}
	close(f.hold)
	n := 0
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("draining stream ended with %v", err)
			}
			break
		}
		n++
	}
	if n != 6 { // schema + 5 batches
		t.Errorf("drained stream got %d messages; want 6", n)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Serve = %v", err)
	}
	waitReleased(t, f)
}

func TestDrainTimeout(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	f.hold = make(chan struct{}) // never closed
	f.started = make(chan struct{})
	f.ctxDone = make(chan struct{})
	addr, stop := startServer(t, &Options{Source: f, DrainTimeout: 50 * time.Millisecond})
	c := arrowClient(t, addr)
	ctx := testCtx(t)
	info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DoGet(ctx, info.Endpoint[0].Ticket); err != nil {
		t.Fatal(err)
	}
	<-f.started
	if err := stop(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	select {
	case <-f.ctxDone:
	default:
		t.Fatal("Serve returned before the running stream was cancelled")
	}
	waitReleased(t, f)
}

// TestConnectionDropped: a client that vanishes mid-stream leaves no batch
// unreleased, even those gRPC had queued on the dead connection.
func TestConnectionDropped(t *testing.T) {
	f := newFakeSource(t, 640, 64, 64) // 12 KiB rows, 64-row batches
	addr, _ := startServer(t, &Options{Source: f})
	for range 3 {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		if err != nil {
			t.Fatal(err)
		}
		c := flight.NewClientFromConn(conn, nil)
		ctx := testCtx(t)
		info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":64}`))
		if err != nil {
			t.Fatal(err)
		}
		st, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
		conn.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.released.Load() != f.made.Load() && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	waitReleased(t, f)
}

// TestLocation: endpoints that name a location are fetched from there.
func TestLocation(t *testing.T) {
	f := newFakeSource(t, 12, 4, 4)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loc := "grpc+tcp://" + lis.Addr().String()
	s, err := New(&Options{Source: f, Location: loc})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Errorf("Addr before Serve = %v; want nil", s.Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := s.Serve(context.Background(), lis); !errors.Is(err, ErrServing) {
			t.Errorf("second Serve = %v; want ErrServing", err)
		}
	}()
	// A client dialled elsewhere (here: the same server by another name)
	// follows the location.
	cl, err := Dial(testCtx(t), "localhost:"+fmt.Sprint(lis.Addr().(*net.TCPAddr).Port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := service.Request{Dataset: "train", BatchSize: 5, WorldSize: 1}
	info, err := cl.Info(testCtx(t), req)
	if err != nil || len(info.Endpoint) != 1 || len(info.Endpoint[0].Location) != 1 || info.Endpoint[0].Location[0].Uri != loc {
		t.Fatalf("Info = %v, %v; want one endpoint at %s", info, err, loc)
	}
	for range 2 { // the second Fetch reuses the peer connection
		st, err := cl.Fetch(testCtx(t), req, nil)
		if err != nil || st.Rows != 12 || st.Batches != 3 {
			t.Fatalf("Fetch = %+v, %v; want 12 rows in 3 batches", st, err)
		}
	}
	cl.mu.Lock()
	peers := len(cl.peers)
	cl.mu.Unlock()
	if peers != 1 {
		t.Errorf("%d peer connections; want 1", peers)
	}
	if s.Addr().String() != lis.Addr().String() {
		t.Errorf("Addr = %v; want %v", s.Addr(), lis.Addr())
	}
}

// TestBackPressure: a client that stops reading stops the Source after a
// batch or two; nothing buffers the stream without bound.
func TestBackPressure(t *testing.T) {
	f := newFakeSource(t, 64*100, 64, 64) // 100 batches of 768 KiB
	addr, _ := startServer(t, &Options{Source: f})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<30)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := flight.NewClientFromConn(conn, nil)
	ctx := testCtx(t)
	info, err := c.GetFlightInfo(ctx, cmd(`{"dataset":"train","batch_size":64}`))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.DoGet(ctx, info.Endpoint[0].Ticket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil { // schema
		t.Fatal(err)
	}
	// Observe the producer for a while without reading: it must stall.
	deadline := time.Now().Add(5 * time.Second)
	for f.made.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	<-time.After(200 * time.Millisecond)
	t.Logf("produced %d batches while the client read none", f.made.Load())
	if m := f.made.Load(); m == 0 || m > 4 {
		t.Fatalf("Source produced %d of 100 batches while the client read none; want 1-4", m)
	}
	n := 0
	for {
		if _, err := st.Recv(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		n++
	}
	if n != 100 {
		t.Fatalf("read %d batches; want 100", n)
	}
	waitReleased(t, f)
}
