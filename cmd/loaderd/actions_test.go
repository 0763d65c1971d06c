package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loaderd/loaderd/service"
)

// TestServerActions runs the commands that act on a running server
// (cache-status, evict, rescan, dataset-errors) as a user would after a
// dataset changed: the epochs of its earlier listing are warned of at
// start, shown by cache-status and removed by evict --other; the server's
// undecodable samples are listed; a change rescan finds makes the
// listing's epochs earlier ones; evict --all empties the dataset's entry.
func TestServerActions(t *testing.T) {
	data := smallData(t, 20, true)
	cache := t.TempDir()
	classes, _ := os.ReadDir(data)
	img := func(name string) { // a copy of an image: the dataset changes
		t.Helper()
		files, _ := os.ReadDir(filepath.Join(data, classes[1].Name()))
		b, err := os.ReadFile(filepath.Join(data, classes[1].Name(), files[0].Name()))
		if err == nil {
			err = os.WriteFile(filepath.Join(data, classes[1].Name(), name), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	code, out, stderr := runCLI(t, "precompute", "--data", "d="+data, "--pipeline", tinyPipeline, "--cache-dir", cache,
		"--shard-size", "16", "--epochs", "0-1", "--log-level", "warn")
	if code != 0 {
		t.Fatalf("precompute: exit %d\n%s%s", code, out, stderr)
	}
	img("added-1.jpg")
	addr, logs, _ := startServeLogged(t, data, cache, "127.0.0.1:0", nil)
	for _, want := range []string{"epochs of an earlier listing of this dataset", "epochs=0-1", "samples=21",
		`to_remove="loaderd evict --dataset d --other --addr ` + addr + `, while serve runs`} { // not the default address: said
		if !strings.Contains(logs.String(), want) {
			t.Errorf("serve after the dataset changed logged\n%s\nwant %q", logs.String(), want)
		}
	}
	cli := func(args ...string) string {
		t.Helper()
		code, out, stderr := runCLI(t, append(args, "--addr", addr)...)
		if code != 0 {
			t.Fatalf("loaderd %q: exit %d\n%s%s", args, code, out, stderr)
		}
		return out
	}
	out = cli("cache-status")
	if !strings.Contains(out, "d: epochs 0-1 (") || !strings.Contains(out, "are cached from an earlier listing of the dataset (listed ") ||
		!strings.Contains(out, "changed since): no server reads them\n") ||
		!strings.Contains(out, "`loaderd evict --dataset d --other --addr "+addr+"` removes what this server does not read") {
		t.Errorf("cache-status after the dataset changed:\n%s", out)
	}
	var st service.CacheStatus
	out = cli("cache-status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Datasets[0].Other) != 1 ||
		st.Datasets[0].Other[0].Listing != "earlier" || st.Datasets[0].Other[0].Samples != 21 {
		t.Errorf("cache-status --json: %+v, %v", st, err)
	}
	if !strings.HasPrefix(out, "{\n  \"datasets\": [\n") { // indented, as scan's, rescan's and every --json
		t.Errorf("cache-status --json is not indented:\n%s", out)
	}
	out = cli("evict", "--dataset", "d", "--other")
	if !strings.Contains(out, "d: evicted 2 epochs the server does not read\n") || strings.Contains(out, "earlier listing") {
		t.Errorf("evict --other:\n%s", out)
	}
	// Epochs never cached are said to be so, not evicted.
	out = cli("evict", "--dataset", "d", "--epochs", "9")
	if !strings.Contains(out, "d: epoch 9 not cached: nothing to evict\n") || strings.Contains(out, "evicted") {
		t.Errorf("evict --epochs 9 of an empty cache:\n%s", out)
	}
	if err := json.Unmarshal([]byte(cli("evict", "--dataset", "d", "--epochs", "8-9", "--json")), &st); err != nil ||
		len(st.Evicted) != 2 || st.Evicted[1] != (service.EpochEviction{Dataset: "d", Epoch: 9, Result: service.EvictNotCached}) {
		t.Errorf("evict --epochs 8-9 --json: %+v, %v", st.Evicted, err)
	}

	// The server finds the undecodable file as it decodes epoch 0.
	if out = cli("dataset-errors", "--dataset", "d"); !strings.Contains(out, "no undecodable sample found so far") {
		t.Errorf("dataset-errors before any decode:\n%s", out)
	}
	cli("fetch", "--dataset", "d", "--batch-size", "8")
	out = cli("dataset-errors", "--dataset", "d")
	if !strings.Contains(out, "zz-corrupt.jpg") || !strings.Contains(out, "undecodable") {
		t.Errorf("dataset-errors after epoch 0:\n%s", out)
	}
	var errs []service.SampleError
	if err := json.Unmarshal([]byte(cli("dataset-errors", "--dataset", "d", "--json")), &errs); err != nil || len(errs) != 1 {
		t.Errorf("dataset-errors --json: %+v, %v", errs, err)
	}

	// A change the server is told of: epoch 0 is now an earlier listing's.
	img("added-2.jpg")
	// (The server's own watcher may list it first, 0.25 s after the change:
	// then the rescan finds nothing new.)
	if out = cli("rescan", "--dataset", "d"); !strings.Contains(out, "d: 23 samples in 2 classes") ||
		!strings.Contains(out, "changed: new requests see the new listing") && !strings.Contains(out, "unchanged") {
		t.Errorf("rescan after a change:\n%s", out)
	}
	var res service.RescanResult
	if err := json.Unmarshal([]byte(cli("rescan", "--json")), &res); err != nil || len(res.Datasets) != 1 || res.Datasets[0].Changed {
		t.Errorf("rescan --json again: %+v, %v; want d unchanged", res, err)
	}
	if out = cli("cache-status"); !strings.Contains(out, "d: epoch 0 (") || !strings.Contains(out, "is cached from an earlier listing") {
		t.Errorf("cache-status after rescan found a change:\n%s", out)
	}
	cli("fetch", "--dataset", "d", "--batch-size", "8", "--epoch", "2")
	out = cli("evict", "--dataset", "d", "--all")
	if !strings.Contains(out, "d: evicted epoch 2\n") && !strings.Contains(out, "d: epoch 2 in use") ||
		!strings.Contains(out, "d: evicted 1 epoch the server does not read") || strings.Contains(out, "earlier listing") ||
		!strings.Contains(out, "none cached") && !strings.Contains(out, "evicting") {
		t.Errorf("evict --all:\n%s", out)
	}
	// Epoch 2's stream may still hold it a moment after the client is
	// done (it shows evicting, and goes when the stream ends).
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out, "none cached"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("cache-status 10 s after evict --all:\n%s", out)
		}
		out = cli("cache-status")
	}
	code, _, stderr = runCLI(t, "evict", "--addr", addr, "--dataset", "nosuch", "--all")
	if code != exitUsage || !strings.Contains(stderr, "it serves: d") {
		t.Errorf("evict of an unknown dataset: exit %d, %s", code, stderr)
	}
}
