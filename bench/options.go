package bench

import (
	"io"
	"log/slog"
	"os/exec"
	"runtime"
	"slices"
	"time"

	"github.com/loaderd/loaderd/gpu"
)

// Options configure Run. The zero value benchmarks 500 generated images
// with imagenet-train, 1…GOMAXPROCS workers, 3 repeats, 4 fused epochs, 1,
// 2 and 4 clients, and no peer.
type Options struct {
	Data       string   // ImageFolder directory or manifest; "" → generated images in a temp dir
	Pipeline   string   // preset or canonical text; "" → imagenet-train
	MaxWorkers int      // cold workers run 1…MaxWorkers; 0 → GOMAXPROCS
	Repeat     int      // timed runs per figure; 0 → 3
	Epochs     int      // K, the fused epochs of the precompute phase; 0 → 4
	Clients    []int    // warm client counts; nil → 1, 2, 4
	Peers      []string // peers to run beside loaderd (PeerNames; ParsePeers reads a --peer value); nil → none
	MaxImages  int      // images every phase runs over (their files are held in memory); 0 → 500, negative → all
	OutDir     string   // "" → nothing written; else JSONName and PlotName in it
	Decoder    string   // augment decoder: "" or "auto", "go"
	Logger     *slog.Logger
	Progress   io.Writer // a line per measurement; nil → quiet

	// PeerPython maps a peer to its interpreter; a peer not in it uses the
	// venv PeersDir()/<peer>/bin/python that bench/peers/setup.sh builds,
	// else (torchvision only) /usr/bin/python3.
	PeerPython map[string]string
	PeerDir    string // directory of the peer scripts; "" → the copies built into the binary
	// PeerGPU runs the peers' GPU variants (DALI's nvJPEG decoder) too;
	// nil → when NVML finds an NVIDIA GPU.
	PeerGPU       *bool
	PeerEpochs    int           // epochs per cold peer run; 0 → 2
	PeerTimeout   time.Duration // each peer script is killed and its peer reported failed after it; 0 → 10 minutes
	Seed          uint64        // augmentation seed
	BatchSize     int           // warm request batch size; 0 → 256
	TransferBytes int64         // bytes each memcpy, loopback and warm run moves at least; 0 → 1 GiB
	GenerateCount int           // images generated when Data is ""; 0 → 256 (capped by MaxImages)

	// Python is the interpreter of the Python client rows of the warm
	// phase (pyarrow.flight, loaderd.Client, LoaderdDataset; see
	// PythonResult); "" → none. PythonPath is prepended to its PYTHONPATH
	// (a checkout's python/ directory, for the loaderd package).
	Python     string
	PythonPath string

	// ServeCommand makes the command of a `loaderd serve` with the given
	// arguments, for the local phase (LocalResult), which measures a
	// server process's CPU; nil → that phase is not measured. `loaderd
	// bench` runs its own binary.
	ServeCommand func(args ...string) *exec.Cmd
	// LocalReaders are the same-node reader counts of the local phase;
	// nil → 1, 2, 4.
	LocalReaders []int
}

const (
	// JSONName, PlotName and TableName are the files Run writes into
	// Options.OutDir; SamplesDir the folder of the peers' sample images.
	JSONName   = "bench.json"
	PlotName   = "bench.png"
	TableName  = "bench.txt"
	SamplesDir = "peer-samples"
)

// withDefaults returns a copy of o (nil allowed) with zero fields filled.
func (o *Options) withDefaults() Options {
	var c Options
	if o != nil {
		c = *o
	}
	c.Clients = slices.Clone(c.Clients)
	c.LocalReaders = slices.Clone(c.LocalReaders)
	if len(c.LocalReaders) == 0 {
		c.LocalReaders = []int{1, 2, 4}
	}
	c.Peers = slices.Clone(c.Peers)
	if c.Pipeline == "" {
		c.Pipeline = "imagenet-train"
	}
	if c.MaxWorkers <= 0 {
		c.MaxWorkers = runtime.GOMAXPROCS(0)
	}
	if c.Repeat <= 0 {
		c.Repeat = 3
	}
	if c.Epochs <= 0 {
		c.Epochs = 4
	}
	if len(c.Clients) == 0 {
		c.Clients = []int{1, 2, 4}
	}
	if c.MaxImages == 0 {
		c.MaxImages = 500
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.PeerGPU == nil {
		has := len(c.Peers) > 0 && hasGPU()
		c.PeerGPU = &has
	}
	if c.PeerEpochs <= 0 {
		c.PeerEpochs = 2
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = 10 * time.Minute
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 256
	}
	if c.TransferBytes <= 0 {
		c.TransferBytes = 1 << 30
	}
	if c.GenerateCount <= 0 {
		c.GenerateCount = 256
	}
	return c
}

// hasGPU reports whether NVML finds an NVIDIA GPU here.
func hasGPU() bool {
	t, err := gpu.Load(nil)
	return err == nil && t.Source == gpu.SourceNVML && len(t.Devices) > 0
}
