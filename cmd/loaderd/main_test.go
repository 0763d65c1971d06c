package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/bench"
	"github.com/loaderd/loaderd/service"
)

// runCLI runs the command line in-process and returns its exit status.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return exitCode(err, &errb), out.String(), errb.String()
}

func TestUsageErrors(t *testing.T) {
	data := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{name: "no command", args: nil, want: "no command"},
		{name: "unknown command", args: []string{"frobnicate"}, want: "unknown command"},
		{name: "unknown flag", args: []string{"serve", "--frob"}, want: "frob"},
		{name: "serve without data", args: []string{"serve"}, want: "--data"},
		{name: "bad data flag", args: []string{"serve", "--data", "nopath"}, want: "NAME=PATH"},
		{name: "bad on-error", args: []string{"serve", "--data", "x=" + data, "--on-error", "ignore"}, want: "--on-error"},
		{name: "bad budget", args: []string{"serve", "--data", "x=" + data, "--cache-budget", "lots"}, want: "bad size"},
		{name: "bad workers", args: []string{"precompute", "--data", "x=" + data, "--epochs", "0", "--workers", "-1"}, want: "--workers"},
		{name: "missing epochs", args: []string{"precompute", "--data", "x=" + data}, want: "--epochs"},
		{name: "bad epochs", args: []string{"precompute", "--data", "x=" + data, "--epochs", "3-1"}, want: "--epochs"},
		{name: "bad pipeline", args: []string{"precompute", "--data", "x=" + data, "--epochs", "0", "--pipeline", "blur(x=1)"}, want: "--pipeline"},
		{name: "tls cert without key", args: []string{"serve", "--data", "x=" + data, "--tls-cert", "c.pem"}, want: "--tls-key"},
		{name: "fetch without dataset", args: []string{"fetch"}, want: "--dataset"},
		{name: "fetch zero repeat", args: []string{"fetch", "--dataset", "d", "--repeat", "0"}, want: "--repeat"},
		{name: "scan without dir", args: []string{"scan"}, want: "scan"},
		{name: "stray argument", args: []string{"version", "extra"}, want: "unexpected argument"},
		{name: "bench bad peer", args: []string{"bench", "--peer", "dali"}, want: "--peer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("loaderd %q: exit %d, stderr %q; want exit 2 mentioning %q", tc.args, code, stderr, tc.want)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, c := range commands() {
		code, _, stderr := runCLI(t, c.name, "--help")
		if code != 0 || !strings.Contains(stderr, "Usage: loaderd "+c.name) {
			t.Errorf("%s --help: exit %d, %q", c.name, code, stderr)
		}
	}
}

func TestParseEpochs(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		bad  bool
	}{
		{in: "0-3", want: []int{0, 1, 2, 3}},
		{in: "0,2,5", want: []int{0, 2, 5}},
		{in: "5,0-2,2", want: []int{0, 1, 2, 5}},
		{in: "7", want: []int{7}},
		{in: "", bad: true},
		{in: "-1", bad: true},
		{in: "a-b", bad: true},
		{in: "0-99999999", bad: true},
	}
	for _, tc := range tests {
		got, err := parseEpochs(tc.in)
		if (err != nil) != tc.bad || !slices.Equal(got, tc.want) {
			t.Errorf("parseEpochs(%q) = %v, %v; want %v (bad=%v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "512", want: 512},
		{in: "64K", want: 64 << 10},
		{in: "1.5G", want: 3 << 29},
		{in: "2TiB", want: 2 << 40},
		{in: "10gb", want: 10 << 30},
		{in: "-1G", bad: true},
		{in: "G", bad: true},
		{in: "99999P", bad: true},
	}
	for _, tc := range tests {
		got, err := parseBytes(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d (bad=%v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.Contains(out, "jpeg decoder:") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

func TestTopologyJSON(t *testing.T) {
	code, out, stderr := runCLI(t, "topology", "--json", "--workers", "3")
	if code != 0 {
		t.Fatalf("topology: exit %d: %s", code, stderr)
	}
	var v struct {
		Topology  map[string]any `json:"topology"`
		Placement map[string]any `json:"placement"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Topology == nil || v.Placement == nil {
		t.Fatalf("topology --json: %v: %s", err, out)
	}
}

// smallData makes a generated ImageFolder dataset and, optionally, one
// undecodable file in it.
func smallData(t *testing.T, n int, corrupt bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := bench.GenerateDataset(dir, n, 2, 3); err != nil {
		t.Fatal(err)
	}
	if corrupt {
		entries, _ := os.ReadDir(dir)
		bad := filepath.Join(dir, entries[0].Name(), "zz-corrupt.jpg")
		if err := os.WriteFile(bad, []byte("\xff\xd8\xff\xe0 this is not a JPEG"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestScan(t *testing.T) {
	code, out, _ := runCLI(t, "scan", smallData(t, 12, false))
	if code != 0 || !strings.Contains(out, "0 undecodable") {
		t.Fatalf("scan of a clean dataset: exit %d, %q", code, out)
	}
	code, out, _ = runCLI(t, "scan", "--json", smallData(t, 12, true))
	if code != 1 || !strings.Contains(out, "zz-corrupt.jpg") {
		t.Fatalf("scan of a dataset with a corrupt file: exit %d, %q", code, out)
	}
}

const tinyPipeline = "random_resized_crop(size=32,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)"

// TestPrecomputeThenServe runs the user's path: precompute two epochs,
// serve them, stream both over Flight, and shut down on cancel.
func TestPrecomputeThenServe(t *testing.T) {
	data := smallData(t, 40, true)
	cache := t.TempDir()
	code, out, stderr := runCLI(t, "precompute", "--data", "d="+data, "--pipeline", tinyPipeline,
		"--cache-dir", cache, "--epochs", "0-1", "--shard-size", "16", "--workers", "2")
	if code != 0 || !strings.Contains(out, "82 samples computed") { // 2 epochs × 41 samples
		t.Fatalf("precompute: exit %d\n%s\n%s", code, out, stderr)
	}
	// A second run finds everything cached.
	code, out, _ = runCLI(t, "precompute", "--data", "d="+data, "--pipeline", tinyPipeline,
		"--cache-dir", cache, "--epochs", "0-1", "--shard-size", "16")
	if code != 0 || !strings.Contains(out, " 0 samples computed") {
		t.Fatalf("second precompute recomputed: exit %d, %s", code, out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &serveFlags{listen: "127.0.0.1:0", maxStreams: 8, drainTimeout: 5 * time.Second}
	f.data = datasetFlag{{Name: "d", Path: data}}
	f.pipeline, f.decoder, f.onError, f.logLevel = tinyPipeline, "auto", "substitute", "warn"
	f.cacheDir, f.shardSize = cache, 16
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() { done <- serve(ctx, f, newLogger(&logs, "warn"), ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	for epoch := range 2 {
		ff := &fetchFlags{addr: addr, clients: 2, repeat: epoch + 1, req: service.Request{Dataset: "d", Epoch: epoch, BatchSize: 8, WorldSize: 1, Shuffle: true}}
		res, err := fetch(ctx, ff, &flightsvc.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// 41 samples over 2 ranks without drop_last: 21 each, one wrapped
		// around; epoch 1 is streamed twice (--repeat 2).
		want := int64(42 * (epoch + 1))
		if res.Images != want || res.Bytes < want*32*32*3 {
			t.Errorf("epoch %d: %d images, %d bytes over 2 ranks; want %d images", epoch, res.Images, res.Bytes, want)
		}
	}
	// The command line, with the loopback limit measured in the same run.
	code, out, stderr = runCLI(t, "fetch", "--addr", addr, "--dataset", "d", "--batch-size", "16", "--json", "--vs-loopback")
	var res fetchResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil {
		t.Fatalf("fetch --vs-loopback: exit %d, %v\n%s%s", code, err, out, stderr)
	}
	if res.Images != 41 || res.LoopbackGBPerSec <= 0 || res.VsLoopback <= 0 {
		t.Errorf("fetch --vs-loopback = %+v; want 41 images and a loopback figure", res)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10s of cancel")
	}
}

// TestBenchCommand runs `loaderd bench` end to end on a tiny dataset (no
// peer) and checks it writes the table, the JSON and the plot.
func TestBenchCommand(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runCLI(t, "bench", "--data", smallData(t, 12, false), "--max-images", "12",
		"--repeat", "1", "--max-workers", "1", "--epochs", "2", "--clients", "1,2", "--out", out)
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"COLD", "PRECOMPUTE", "WARM", "LIMITS", "served/loopback"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("bench table lacks %q:\n%s", want, stdout)
		}
	}
	for _, f := range []string{"bench.json", "bench.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("bench wrote no %s: %v", f, err)
		}
	}
}
