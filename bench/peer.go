package bench

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrPeerUnavailable reports a peer that cannot run here: no interpreter,
// no framework, no script. Run records it in the peer's PeerResult.Error.
var ErrPeerUnavailable = errors.New("bench: peer unavailable")

// peerScripts are the peer scripts of bench/peers, built into the binary so
// that bench finds them from any clone and any working directory.
//
//go:embed peers/*.py
var peerScripts embed.FS

// A peerSpec describes one peer system and how bench runs its script.
type peerSpec struct {
	Name   string // as --peer names it
	Label  string // as tables and plots name it
	Script string // file name in bench/peers
	// InProcess: the script also runs num_workers 0 (in the main process,
	// one core), compared with 1 loaderd worker.
	InProcess bool
	Variants  []string // cold variants, each measured at every worker count
	// MultiEpoch is the variant that keeps decoded images across epochs
	// (tf.data's cache()); measured over Options.Epochs epochs at the most
	// workers, beside loaderd's fused precompute. "" for none.
	MultiEpoch string
	// Fallback is the interpreter used when the peer has no venv and none
	// is given, or "" for none.
	Fallback string
	// GPUArgs, when set, run the cold variants once more on an NVIDIA GPU
	// (DALI's mixed nvJPEG decoder); those points are kept apart from the
	// CPU comparison.
	GPUArgs []string
}

var peerSpecs = []peerSpec{
	{Name: "dali", Label: "DALI (CPU)", Script: "dali_peer.py", Variants: []string{"rrc", "roi"},
		GPUArgs: []string{"--device", "mixed"}},
	{Name: "tfdata", Label: "tf.data", Script: "tfdata_peer.py", Variants: []string{"crop"}, MultiEpoch: "cache"},
	{Name: "torchvision", Label: "torchvision DataLoader", Script: "torchvision_peer.py", InProcess: true,
		Variants: []string{"pil", "tensor"}, Fallback: "/usr/bin/python3"},
}

// PeerNames are the peers Options.Peers may name, in the order bench runs
// them.
func PeerNames() []string {
	names := make([]string, len(peerSpecs))
	for i, s := range peerSpecs {
		names[i] = s.Name
	}
	return names
}

// ParsePeers turns a --peer value into peer names: a comma-separated list
// of PeerNames, or "all"; "" gives none. Unknown or repeated names give an
// error wrapping ErrOptions.
func ParsePeers(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if strings.TrimSpace(s) == "all" {
		return PeerNames(), nil
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if _, ok := findPeerSpec(n); !ok {
			return nil, fmt.Errorf("%w: unknown peer %q (want %s or all)", ErrOptions, n, strings.Join(PeerNames(), ", "))
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("%w: peer %q named twice", ErrOptions, n)
		}
		out = append(out, n)
	}
	return out, nil
}

func findPeerSpec(name string) (peerSpec, bool) {
	for _, s := range peerSpecs {
		if s.Name == name {
			return s, true
		}
	}
	return peerSpec{}, false
}

// PeersDir is where bench/peers/setup.sh builds one venv per peer and where
// bench looks for them: $LOADERD_PEERS_DIR, else ~/.cache/loaderd/peers.
func PeersDir() string {
	if d := os.Getenv("LOADERD_PEERS_DIR"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "loaderd", "peers")
	}
	return ""
}

// peerPython returns the interpreter for spec: explicit if given, else the
// venv PeersDir()/<name>/bin/python, else spec.Fallback. An error wraps
// ErrPeerUnavailable and says how to install the peer.
func peerPython(spec peerSpec, explicit string) (string, error) {
	if explicit != "" {
		if _, err := os.Stat(explicit); err != nil {
			return "", fmt.Errorf("%w: %s: no python at %s", ErrPeerUnavailable, spec.Name, explicit)
		}
		return explicit, nil
	}
	var tried []string
	if dir := PeersDir(); dir != "" {
		venv := filepath.Join(dir, spec.Name, "bin", "python")
		if _, err := os.Stat(venv); err == nil {
			return venv, nil
		}
		tried = append(tried, venv)
	}
	if spec.Fallback != "" {
		if _, err := os.Stat(spec.Fallback); err == nil {
			return spec.Fallback, nil
		}
		tried = append(tried, spec.Fallback)
	}
	return "", fmt.Errorf("%w: %s: no python at %s: run bench/peers/setup.sh %s, or give --peer-python %s=PATH",
		ErrPeerUnavailable, spec.Name, strings.Join(tried, " or "), spec.Name, spec.Name)
}

// writePeerScripts copies the embedded peer scripts into dir and returns it.
func writePeerScripts(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("bench: peers: %w", err)
	}
	err := fs.WalkDir(peerScripts, "peers", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := peerScripts.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, filepath.Base(path)), b, 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("bench: peers: %w", err)
	}
	return dir, nil
}

// peerRun is one invocation of a peer script.
type peerRun struct {
	Name     string // peer name, for messages
	Python   string
	Script   string
	Dir      string // dataset
	Workers  []int
	Variants []string
	Epochs   int
	Repeats  int
	Samples  string    // --samples directory, "" for none
	Extra    []string  // more arguments for the script
	Stderr   io.Writer // progress lines, may be nil
}

// peerLine is what a peer script prints per configuration and repeat.
type peerLine struct {
	System       string            `json:"system"`
	Variant      string            `json:"variant"`
	Mode         string            `json:"mode"`
	Workers      *int              `json:"workers"`
	Images       int64             `json:"images"`
	Seconds      float64           `json:"seconds"`
	ImagesPerSec *float64          `json:"images_per_s"`
	CPUSeconds   float64           `json:"cpu_seconds"`
	Epochs       int               `json:"epochs"`
	Versions     map[string]string `json:"versions"`
}

// run executes the script and returns one Point per (variant, workers), in
// the order of Variants then Workers, and the versions the script printed.
// A missing interpreter or framework gives an error wrapping
// ErrPeerUnavailable; any other failure, the script's last line of stderr.
func (pr *peerRun) run(ctx context.Context) ([]Point, map[string]string, error) {
	if _, err := os.Stat(pr.Python); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrPeerUnavailable, pr.Name, err)
	}
	ws := make([]string, len(pr.Workers))
	for i, w := range pr.Workers {
		ws[i] = strconv.Itoa(w)
	}
	args := []string{pr.Script, pr.Dir, "--workers", strings.Join(ws, ","), "--variant", strings.Join(pr.Variants, ","),
		"--epochs", strconv.Itoa(pr.Epochs), "--repeats", strconv.Itoa(pr.Repeats)}
	if pr.Samples != "" {
		args = append(args, "--samples", pr.Samples)
	}
	args = append(args, pr.Extra...)
	cmd := exec.CommandContext(ctx, pr.Python, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second // DataLoader workers may hold the pipes after a kill
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("bench: peer %s: %w", pr.Name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("%w: %s: %w", ErrPeerUnavailable, pr.Name, err)
	}
	var lines []peerLine
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l peerLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Workers == nil || l.ImagesPerSec == nil {
			continue // not a result line
		}
		lines = append(lines, l)
		if pr.Stderr != nil {
			fmt.Fprintf(pr.Stderr, "peer %s: %s, workers %d: %.0f images/s, %.2f cores\n",
				pr.Name, l.Variant, *l.Workers, *l.ImagesPerSec, l.cpuCores())
		}
	}
	waitErr := cmd.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("bench: peer %s: %w", pr.Name, err)
	}
	if waitErr != nil {
		msg := lastLine(stderr.String())
		if strings.Contains(stderr.String(), "No module named") {
			return nil, nil, fmt.Errorf("%w: %s: %s: %s", ErrPeerUnavailable, pr.Name, pr.Python, msg)
		}
		return nil, nil, fmt.Errorf("bench: peer %s: %w: %s", pr.Name, waitErr, msg)
	}
	points := peerPoints(pr.Variants, pr.Workers, lines)
	if len(points) == 0 {
		return nil, nil, fmt.Errorf("bench: peer %s printed no results: %s", pr.Name, lastLine(stderr.String()))
	}
	return points, lines[0].Versions, nil
}

func (l *peerLine) cpuCores() float64 {
	if l.Seconds <= 0 {
		return 0
	}
	return l.CPUSeconds / l.Seconds
}

// peerPoints groups the script's lines by variant and workers into Points:
// the median of the repeats, their min and max, and the median CPU cores.
func peerPoints(variants []string, workers []int, lines []peerLine) []Point {
	var points []Point
	for _, v := range variants {
		for _, w := range workers {
			var runs, cores []float64
			var images int64
			epochs := 0
			for _, l := range lines {
				if *l.Workers == w && (l.Variant == v || l.Variant == "" && len(variants) == 1) {
					runs = append(runs, *l.ImagesPerSec)
					cores = append(cores, l.cpuCores())
					images, epochs = l.Images, l.Epochs
				}
			}
			if len(runs) == 0 {
				continue
			}
			s := summarize(runs)
			points = append(points, Point{Workers: w, Variant: v, Epochs: epochs, ImagesPerSec: s.Median,
				Min: s.Min, Max: s.Max, Runs: runs, Images: images, CPUCores: summarize(cores).Median})
		}
	}
	return points
}

// runPeers runs every peer in o.Peers over dir, one after another, and
// returns a PeerResult for each, in that order; a peer that cannot run has
// its Error set. Only ctx's end is returned as an error.
func runPeers(ctx context.Context, o *Options, tmp, dir string, progress func(string, ...any)) ([]PeerResult, error) {
	scripts := o.PeerDir
	if scripts == "" {
		var err error
		if scripts, err = writePeerScripts(filepath.Join(tmp, "peers")); err != nil {
			return nil, err
		}
	}
	samples := filepath.Join(tmp, "peer-samples")
	if o.OutDir != "" {
		samples = filepath.Join(o.OutDir, SamplesDir)
	}
	var results []PeerResult
	for _, name := range o.Peers {
		spec, _ := findPeerSpec(name)
		res := runPeer(ctx, o, spec, scripts, dir, samples, progress)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		results = append(results, res)
	}
	return results, nil
}

// runPeer runs one peer: its cold variants at (0 and) 1…MaxWorkers, then its
// multi-epoch variant, if any, over o.Epochs epochs at MaxWorkers, then, with
// a GPU, its cold variants on the GPU.
func runPeer(ctx context.Context, o *Options, spec peerSpec, scripts, dir, samples string, progress func(string, ...any)) PeerResult {
	res := PeerResult{Name: spec.Name, Label: spec.Label}
	fail := func(err error) PeerResult {
		if !errors.Is(err, ErrPeerUnavailable) {
			o.Logger.Warn("peer failed", "peer", spec.Name, "err", err)
		}
		progress("peer %s: %v", spec.Name, err)
		res.Error = err.Error()
		return res
	}
	python, err := peerPython(spec, o.PeerPython[spec.Name])
	if err != nil {
		return fail(err)
	}
	res.Python = python
	script := filepath.Join(scripts, spec.Script)
	if _, err := os.Stat(script); err != nil {
		return fail(fmt.Errorf("%w: %s: script: %w", ErrPeerUnavailable, spec.Name, err))
	}
	var workers []int
	if spec.InProcess {
		workers = append(workers, 0)
	}
	for w := 1; w <= o.MaxWorkers; w++ {
		workers = append(workers, w)
	}
	runs := []peerRun{{Variants: spec.Variants, Workers: workers, Epochs: o.PeerEpochs}}
	if spec.MultiEpoch != "" {
		runs = append(runs, peerRun{Variants: []string{spec.MultiEpoch}, Workers: []int{o.MaxWorkers}, Epochs: o.Epochs})
	}
	if len(spec.GPUArgs) > 0 && *o.PeerGPU {
		runs = append(runs, peerRun{Variants: spec.Variants, Workers: workers, Epochs: o.PeerEpochs, Extra: spec.GPUArgs})
	}
	for i, pr := range runs {
		pr.Name, pr.Python, pr.Script, pr.Dir, pr.Repeats, pr.Samples, pr.Stderr = spec.Name, python, script, dir, o.Repeat, samples, o.Progress
		pctx, cancel := context.WithTimeout(ctx, o.PeerTimeout)
		points, versions, err := pr.run(pctx)
		timedOut := pctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil && timedOut {
			err = fmt.Errorf("bench: peer %s timed out after %v: %w", spec.Name, o.PeerTimeout, err)
		}
		if err != nil {
			return fail(err)
		}
		switch {
		case i == 0:
			res.Cold, res.Versions = points, versions
		case len(pr.Extra) > 0:
			for j := range points {
				points[j].Variant += "/" + pr.Extra[len(pr.Extra)-1] // rrc/mixed
			}
			res.GPU = points
		default:
			res.MultiEpoch = points
		}
	}
	return res
}

// best returns the fastest cold point of res at loaderd worker count w (a
// peer's num_workers 0 and 1 both count as one worker), and false if none.
func (res *PeerResult) best(w int) (Point, bool) {
	var b Point
	found := false
	for _, p := range res.Cold {
		if max(p.Workers, 1) == w && (!found || p.ImagesPerSec > b.ImagesPerSec) {
			b, found = p, true
		}
	}
	return b, found
}

// VersionText is the peer's versions as "k v, k v" in key order.
func (res *PeerResult) VersionText() string {
	keys := make([]string, 0, len(res.Versions))
	for k := range res.Versions {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " " + res.Versions[k]
	}
	return strings.Join(parts, ", ")
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
