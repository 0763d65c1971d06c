package bench

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// pyClientScript measures one Python client of the warm phase
// (bench/pyclients/pyclient.py), built into the binary like the peers.
//
//go:embed pyclients/pyclient.py
var pyClientScript []byte

// pythonClients are the clients the Python rows measure, in order.
// The package's clients run over Flight like pyarrow's, then reading the
// cache in place (SPEC §9; the server is on this host).
var pythonClients = []struct{ name, label, client, transport string }{
	{"pyarrow", "pyarrow.flight", "pyarrow", "flight"},
	{"loaderd", "loaderd.Client", "loaderd", "flight"},
	{"dataset", "loaderd.torch.LoaderdDataset", "dataset", "flight"},
	{"loaderd-local", "loaderd.Client, local", "loaderd", "local"},
	{"dataset-local", "LoaderdDataset, local", "dataset", "local"},
}

// A PythonResult is one Python client's warm figures on the same cached
// epoch as the Go client's: one process, one client (rank 0 of 1), the
// same batch size and passes. A client that could not run has only Error.
type PythonResult struct {
	Name     string            `json:"name"`  // pyarrow, loaderd, dataset
	Label    string            `json:"label"` // as the table names it
	Python   string            `json:"python"`
	Versions map[string]string `json:"versions,omitempty"` // Python, pyarrow, numpy, loaderd, torch; malloc tuning
	Point    Point             `json:"point"`              // Clients 1; GBPerSec counts image bytes
	// CPUPerGB is the client process's CPU seconds per GB received (median).
	CPUPerGB float64 `json:"cpu_s_per_gb,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// pythonPhase runs each Python client against addr in a process of its
// own, one after another, with o.Python.
func pythonPhase(ctx context.Context, o *Options, tmp, addr string, passes int, progress func(string, ...any)) ([]PythonResult, error) {
	script := filepath.Join(tmp, "pyclient.py")
	if err := os.WriteFile(script, pyClientScript, 0o644); err != nil {
		return nil, fmt.Errorf("bench: python: %w", err)
	}
	env := os.Environ()
	if o.PythonPath != "" {
		path := o.PythonPath
		if old := os.Getenv("PYTHONPATH"); old != "" {
			path += string(os.PathListSeparator) + old
		}
		env = append(env, "PYTHONPATH="+path)
	}
	var out []PythonResult
	for _, c := range pythonClients {
		res := PythonResult{Name: c.name, Label: c.label, Python: o.Python}
		rctx, cancel := context.WithTimeout(ctx, o.PeerTimeout)
		cmd := exec.CommandContext(rctx, o.Python, script, "--addr", addr, "--dataset", datasetName,
			"--batch-size", strconv.Itoa(o.BatchSize), "--passes", strconv.Itoa(passes),
			"--repeat", strconv.Itoa(o.Repeat), "--client", c.client, "--transport", c.transport)
		cmd.Env = env
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		runErr := cmd.Run()
		cancel()
		if err := ctx.Err(); err != nil {
			return out, fmt.Errorf("bench: python: %w", err)
		}
		var got struct {
			ImagesPerSec []float64         `json:"images_per_sec"`
			GBPerSec     []float64         `json:"gb_per_sec"`
			CPUPerGB     []float64         `json:"cpu_s_per_gb"`
			Images       int64             `json:"images"`
			Bytes        int64             `json:"bytes"`
			Versions     map[string]string `json:"versions"`
			Error        string            `json:"error"`
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &got)
		switch {
		case got.Error != "":
			res.Error = got.Error
		case runErr != nil || jerr != nil || len(got.ImagesPerSec) == 0:
			res.Error = fmt.Sprintf("%s %s: %v %v: %s", o.Python, c.name, runErr, jerr, tail(stderr.String(), 400))
		default:
			s, g := summarize(got.ImagesPerSec), summarize(got.GBPerSec)
			res.Versions = got.Versions
			res.Point = Point{Clients: 1, ImagesPerSec: s.Median, GBPerSec: g.Median, Min: s.Min, Max: s.Max,
				Runs: got.ImagesPerSec, Images: got.Images, Bytes: got.Bytes}
			res.CPUPerGB = summarize(got.CPUPerGB).Median
		}
		if res.Error != "" {
			progress("python %s: not measured: %s", c.name, res.Error)
		} else {
			progress("python %s: %.0f images/s [%.0f–%.0f], %.2f GB/s, %.2f CPU-s/GB", c.name,
				res.Point.ImagesPerSec, res.Point.Min, res.Point.Max, res.Point.GBPerSec, res.CPUPerGB)
		}
		out = append(out, res)
	}
	return out, nil
}

// PythonErr returns an error naming every Python client of r that could
// not run, or nil.
func (r *Report) PythonErr() error {
	var msgs []string
	for _, p := range r.Python {
		if p.Error != "" {
			msgs = append(msgs, fmt.Sprintf("python client %s: %s", p.Name, p.Error))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("bench: %s", strings.Join(msgs, "; "))
}

// A PythonRatio compares a Python client with the Go client (one client,
// raw mode) and with one-stream loopback TCP, measured in the same run.
type PythonRatio struct {
	Name         string  `json:"name"`
	GBPerSec     float64 `json:"gb_per_sec"`
	OverGo       float64 `json:"over_go_client,omitempty"`
	OverLoopback float64 `json:"over_loopback,omitempty"`
}

func (r *Report) pythonRatios() []PythonRatio {
	var goGB, lb float64
	for _, p := range r.Warm {
		if p.Clients == 1 {
			goGB = p.GBPerSec
		}
	}
	for _, l := range r.Limits.Loopback {
		if l.Streams == 1 {
			lb = l.GBPerSec
		}
	}
	var out []PythonRatio
	for _, p := range r.Python {
		if p.Error != "" {
			continue
		}
		pr := PythonRatio{Name: p.Name, GBPerSec: p.Point.GBPerSec}
		if goGB > 0 {
			pr.OverGo = p.Point.GBPerSec / goGB
		}
		if lb > 0 {
			pr.OverLoopback = p.Point.GBPerSec / lb
		}
		out = append(out, pr)
	}
	return out
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
