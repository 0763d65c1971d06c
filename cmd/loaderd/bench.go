package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/loaderd/loaderd/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o bench.Options
	var clients, peers, pythons, python string
	fs := newFlags("bench", "[--data DIR] [--peer all|dali,tfdata,torchvision] [flags]")
	fs.StringVar(&o.Data, "data", "", "ImageFolder `DIRECTORY` to measure on (default: generated images)")
	fs.StringVar(&o.Pipeline, "pipeline", defaultPipeline, "augmentation `PIPELINE` (`loaderd pipelines` lists the ops)")
	fs.StringVar(&o.Decoder, "decoder", "auto", "JPEG `DECODER`: auto (libjpeg-turbo when built in, else go), libjpeg-turbo, go")
	fs.IntVar(&o.MaxWorkers, "max-workers", runtime.GOMAXPROCS(0), "measure the cold pipeline at 1..N workers")
	fs.IntVar(&o.Repeat, "repeat", 3, "repeats of each measurement (median reported)")
	fs.IntVar(&o.Epochs, "epochs", 4, "epochs of the fused precompute measurement")
	fs.StringVar(&clients, "clients", "1,2,4", "concurrent Flight clients of the warm measurement")
	fs.StringVar(&peers, "peer", "", "`PEERS` to run side by side: dali, tfdata, torchvision (comma-separated) or all; each must run, or bench exits 1")
	fs.StringVar(&pythons, "peer-python", "", "`PEER=PATH,...`: a peer's Python (default: the venv of bench/peers/setup.sh in "+
		"$LOADERD_PEERS_DIR or ~/.cache/loaderd/peers; torchvision falls back to /usr/bin/python3)")
	fs.StringVar(&python, "python", "python3", "`PYTHON` for the Python client rows (pyarrow.flight, loaderd.Client, LoaderdDataset) on the warm epoch; "+
		"\"none\" skips them; given explicitly, each must run, or bench exits 1")
	fs.IntVar(&o.MaxImages, "max-images", 0, "images per measurement (0 = the harness default)")
	transfer := byteSize(1 << 30)
	fs.Var(&transfer, "transfer", "`SIZE` each memcpy, loopback, warm and local run moves at least, in binary units (smaller: a quicker, noisier bench)")
	fs.StringVar(&o.OutDir, "out", "bench-out", "`DIRECTORY` for bench.txt (the table), bench.json, bench.png and the peers' sample images")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	cl, err := parseEpochs(clients) // same syntax: "1,2,4" or "1-4"
	if err != nil || len(cl) == 0 || cl[0] < 1 {
		return usagef("--clients %q: want a list like 1,2,4", clients)
	}
	o.Clients = cl
	if o.Peers, err = bench.ParsePeers(peers); err != nil {
		return usagef("--peer %q: want %s or all (comma-separated, each once)", peers, strings.Join(bench.PeerNames(), ", "))
	}
	if o.PeerPython, err = parsePeerPython(pythons); err != nil {
		return err
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"max-workers", o.MaxWorkers}, {"repeat", o.Repeat}, {"epochs", o.Epochs}} {
		if v.n < 1 {
			return usagef("--%s %d: want 1 or more", v.name, v.n)
		}
	}
	if _, err := parsePipeline(o.Pipeline, o.Decoder); err != nil {
		return err
	}
	if transfer < 1<<20 {
		return usagef("--transfer %s: want 1M or more", transfer.String())
	}
	o.TransferBytes = int64(transfer)
	pythonGiven := fs.Changed("python")
	if python != "none" {
		if p, err := exec.LookPath(python); err == nil {
			o.Python, o.PythonPath = p, checkoutPython()
		} else if pythonGiven {
			return usagef("--python %q: %v", python, err)
		}
	}
	o.Logger = newLogger(stderr, "warn")
	o.Progress = stderr
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	// The local phase measures a server process's CPU: this binary, as
	// `loaderd serve` (LOADERD_TEST_MAIN makes a test binary loaderd too).
	if exe, err := os.Executable(); err == nil {
		o.ServeCommand = func(args ...string) *exec.Cmd {
			cmd := exec.Command(exe, args...)
			cmd.Env = append(os.Environ(), "LOADERD_TEST_MAIN=1")
			return cmd
		}
	}
	rep, err := bench.Run(ctx, &o)
	if err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil { // Run wrote it, the JSON and the PNG into OutDir too
		return err
	}
	if err := rep.PeerErr(); err != nil { // a peer asked for that did not run: exit 1 with the reason
		return err
	}
	if pythonGiven {
		return rep.PythonErr()
	}
	return nil
}

// checkoutPython is the python/ directory of the loaderd checkout the
// working directory is in (it holds the loaderd package), or "".
func checkoutPython() string {
	dir, err := os.Getwd()
	for err == nil {
		if _, serr := os.Stat(filepath.Join(dir, "python", "loaderd", "__init__.py")); serr == nil {
			return filepath.Join(dir, "python")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return ""
}

// parsePeerPython reads --peer-python: PEER=PATH pairs, comma-separated.
func parsePeerPython(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		name, path, ok := strings.Cut(kv, "=")
		if _, err := bench.ParsePeers(name); !ok || path == "" || err != nil || name == "all" {
			return nil, usagef("--peer-python %q: want PEER=PATH with PEER one of %s", kv, strings.Join(bench.PeerNames(), ", "))
		}
		m[name] = path
	}
	return m, nil
}
