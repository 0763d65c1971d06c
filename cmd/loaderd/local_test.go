package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/service"
)

// startServeOn runs `loaderd serve` in-process on listen until the test
// ends (or stop); it returns the address it listens on.
func startServeOn(t *testing.T, data, cache, listen string, mod func(*serveFlags)) (addr string, stop func()) {
	t.Helper()
	addr, _, stop = startServeLogged(t, data, cache, listen, mod)
	return addr, stop
}

// startServeLogged is startServeOn that also returns what serve logs (at
// level warn).
func startServeLogged(t *testing.T, data, cache, listen string, mod func(*serveFlags)) (addr string, logs *syncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &serveFlags{listen: listen, maxStreams: 16, drainTimeout: 5 * time.Second}
	f.data = datasetFlag{{Name: "d", Path: data}}
	f.pipeline, f.decoder, f.onError, f.logLevel = tinyPipeline, "auto", "substitute", "warn"
	f.cacheDir, f.shardSize, f.workers = cache, 16, 2
	if mod != nil {
		mod(f)
	}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	logs = &syncBuffer{}
	go func() { done <- serve(ctx, f, newLogger(logs, "warn"), ready) }()
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	if _, ok := unixPath(listen); ok {
		addr = listen
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10 s")
		}
	}
	t.Cleanup(stop)
	return addr, logs, stop
}

func digestOf(ctx context.Context, cl *flightsvc.Client, req service.Request) (string, flightsvc.FetchStats, error) {
	h := sha256.New()
	st, err := cl.Fetch(ctx, req, func(rec arrow.RecordBatch) error {
		for _, v := range rec.Column(0).(*array.Uint64).Uint64Values() {
			binary.Write(h, binary.LittleEndian, v)
		}
		for _, v := range rec.Column(1).(*array.Int64).Int64Values() {
			binary.Write(h, binary.LittleEndian, v)
		}
		img, err := arrowio.ImagesOf(rec)
		h.Write(img)
		return err
	})
	return hex.EncodeToString(h.Sum(nil)), st, err
}

// TestLocalTransport: over a Unix-domain socket and over TCP, the Go
// client reads the cache in place (cold and warm, every request shape)
// and assembles the records of the ordinary stream, byte for byte; the
// command line picks the way with --transport; no lease outlives its
// stream.
func TestLocalTransport(t *testing.T) {
	data := smallData(t, 41, true)
	cache := t.TempDir()
	sock := "unix://" + filepath.Join(t.TempDir(), "loaderd.sock")
	addr, stop := startServeOn(t, data, cache, sock, nil)
	ctx := context.Background()
	cl, err := flightsvc.Dial(ctx, addr, nil) // Transport auto
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	shapes := []service.Request{
		{Dataset: "d", Epoch: 1, BatchSize: 8, WorldSize: 1, Shuffle: true},
		{Dataset: "d", Epoch: 1, BatchSize: 5, WorldSize: 3, Rank: 2, Shuffle: true},
		{Dataset: "d", Epoch: 1, BatchSize: 4, WorldSize: 2, Rank: 1, DropLast: true, Shuffle: true},
		{Dataset: "d", Epoch: 1, BatchSize: 8, WorldSize: 1, StartBatch: 2, Shuffle: true},
		{Dataset: "d", Epoch: 1, BatchSize: 16, WorldSize: 1},
	}
	for _, pass := range []string{"cold", "warm"} {
		for _, req := range shapes {
			local, lst, err := digestOf(ctx, cl, req) // the first one computes epoch 1
			if err != nil {
				t.Fatalf("%s %+v local: %v", pass, req, err)
			}
			req.Transport = service.TransportFlight
			want, fst, err := digestOf(ctx, cl, req)
			if err != nil {
				t.Fatal(err)
			}
			if lst.Transport != service.TransportLocal || fst.Transport != service.TransportFlight {
				t.Fatalf("%s %+v: transports %q (fallback %q), %q", pass, req, lst.Transport, lst.Fallback, fst.Transport)
			}
			if local != want || lst.Rows != fst.Rows || lst.Batches != fst.Batches || lst.Rows == 0 {
				t.Fatalf("%s %+v: local %s (%d rows), flight %s (%d rows)", pass, req, local, lst.Rows, want, fst.Rows)
			}
		}
		if pass == "cold" { // complete the epoch: the warm pass reads committed shards only
			if _, err := cl.Action(ctx, flightsvc.ActionPrecompute, []byte(`{"dataset":"d","epochs":[1]}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	code, out, stderr := runCLI(t, "fetch", "--addr", addr, "--dataset", "d", "--batch-size", "16", "--transport", "local", "--json")
	var res fetchResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || res.Transport != "local" || res.Images != 42 { // 41 images and an undecodable file
		t.Fatalf("fetch --transport local over a socket: exit %d, %v, %+v\n%s", code, err, res, stderr)
	}
	stop()

	// Over TCP the client proves it is on this host (boot id and the
	// cache's token); --cache-dir where the cache is not makes it fail.
	addr, _ = startServeOn(t, data, cache, "127.0.0.1:0", nil)
	for _, tc := range []struct {
		args         []string
		code         int
		transport    string
		stdout, logs string
	}{
		{args: []string{"--transport", "auto"}, transport: "local"},
		{args: []string{"--transport", "flight"}, transport: "flight"},
		// Why it cannot read in place, in the command line's terms: its
		// --cache-dir and serve's --cache-group, no Go API's names.
		{args: []string{"--transport", "auto", "--cache-dir", t.TempDir()}, transport: "flight", logs: "cannot read the server's cache"},
		{args: []string{"--transport", "auto", "--cache-dir", t.TempDir()}, transport: "flight", logs: "give --cache-dir DIR where this host mounts the cache"},
		{args: []string{"--transport", "local", "--cache-dir", t.TempDir()}, code: exitUsage, logs: "cannot be read in place"},
		{args: []string{"--transport", "local", "--cache-dir", t.TempDir()}, code: exitUsage, logs: "member of the server's --cache-group, or give --cache-dir DIR"},
		{args: []string{"--transport", "shm"}, code: exitUsage, logs: "--transport"},
	} {
		args := append([]string{"fetch", "--addr", addr, "--dataset", "d", "--clients", "2", "--json"}, tc.args...)
		code, out, stderr := runCLI(t, args...)
		var res fetchResult
		if code != tc.code || !strings.Contains(stderr, tc.logs) || strings.Contains(stderr+out, "ClientOptions") {
			t.Errorf("loaderd %q: exit %d, %s%s; want exit %d and %q", args, code, out, stderr, tc.code, tc.logs)
			continue
		}
		if tc.code == 0 && (json.Unmarshal([]byte(out), &res) != nil || res.Transport != tc.transport || res.Images != 42) {
			t.Errorf("loaderd %q: %s; want 42 images by %s", args, out, tc.transport)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "local", "lease-*")); len(left) != 0 {
		t.Errorf("leases left after every stream ended: %v", left)
	}
}

// localHelperEnv makes TestLocalHelper fetch epoch 0 with transport auto
// from the address it holds and print {"transport","fallback","digest"}.
const localHelperEnv = "LOADERD_LOCAL_HELPER"

func TestLocalHelper(t *testing.T) {
	addr := os.Getenv(localHelperEnv)
	if addr == "" {
		return // only a subprocess of TestLocalTransportOtherUsers runs this
	}
	cl, err := flightsvc.Dial(context.Background(), addr, &flightsvc.ClientOptions{Logger: newLogger(io.Discard, "info")})
	if err != nil {
		t.Fatal(err)
	}
	d, st, err := digestOf(context.Background(), cl, service.Request{Dataset: "d", BatchSize: 8, WorldSize: 1, Shuffle: true})
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(os.Stdout).Encode(map[string]string{"transport": st.Transport, "fallback": st.Fallback, "digest": d})
}

// TestLocalTransportOtherUsers runs trainers as another user: one in the
// cache's group (--cache-group) reads it in place, one outside it falls
// back to the ordinary stream; both get the same bytes.
func TestLocalTransportOtherUsers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run a trainer as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody on this machine: %v", err)
	}
	group, err := user.LookupGroupId(nobody.Gid)
	if err != nil {
		t.Skipf("no group of nobody: %v", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	// A directory the other user can enter, holding the cache and a copy
	// of this test binary (go test's own directories are private).
	top, err := os.MkdirTemp("", "loaderd-local-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(top, "loaderd.test")
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(top, "cache")
	addr, _ := startServeOn(t, smallData(t, 30, false), cache, "127.0.0.1:0", func(f *serveFlags) { f.cacheGroup = group.Name })

	ctx := context.Background()
	cl, err := flightsvc.Dial(ctx, addr, &flightsvc.ClientOptions{Transport: service.TransportFlight})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	want, _, err := digestOf(ctx, cl, service.Request{Dataset: "d", BatchSize: 8, WorldSize: 1, Shuffle: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		gid       int
		transport string
	}{
		{name: "in the cache's group", gid: gid, transport: "local"},
		{name: "outside it", gid: gid - 1, transport: "flight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "-test.run=^TestLocalHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), localHelperEnv+"="+addr)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(tc.gid)}}
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("trainer as uid %d gid %d: %v\n%s", uid, tc.gid, err, out)
			}
			line, _, _ := strings.Cut(string(out), "\n")
			var got map[string]string
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("trainer printed %q", out)
			}
			if got["transport"] != tc.transport || got["digest"] != want {
				t.Errorf("trainer as uid %d gid %d: %v; want %s and digest %s", uid, tc.gid, got, tc.transport, want)
			}
			if tc.transport == "flight" && !strings.Contains(got["fallback"], "permission denied") {
				t.Errorf("fallback reason %q, want the token file's permission error", got["fallback"])
			}
		})
	}
}
