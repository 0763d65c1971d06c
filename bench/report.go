package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// A Report holds every figure of one bench run.
type Report struct {
	Machine Machine     `json:"machine"`
	Dataset DatasetInfo `json:"dataset"`
	Repeat  int         `json:"repeat"` // timed runs per figure (median, min, max)
	Options Settings    `json:"options"`

	Cold       []Point `json:"cold"`       // decode + augment, per worker count
	Precompute []Point `json:"precompute"` // into the cache: 1 epoch, then K fused epochs
	Warm       []Point `json:"warm"`       // Flight DoGet of a cached epoch, per client count
	Limits     Limits  `json:"limits"`
	// Peers are the other loaders measured on the same files, in the order
	// asked for; a peer that could not run has only its Error.
	Peers []PeerResult `json:"peers,omitempty"`
	// Python are the Python clients on the warm phase's cached epoch, with
	// Options.Python; a client that could not run has only its Error.
	Python []PythonResult `json:"python_clients,omitempty"`
	// Local are same-node readers of the cache (SPEC §9) beside the
	// ordinary stream, against a loaderd serve process (Options.ServeCommand).
	Local *LocalResult `json:"local,omitempty"`

	Ratios  Ratios  `json:"ratios"`
	Seconds float64 `json:"seconds"` // wall time of the whole run

	JSONPath  string `json:"-"` // where Run wrote the JSON, if anywhere
	PlotPath  string `json:"-"` // where Run wrote the PNG, if anywhere
	TablePath string `json:"-"` // where Run wrote the table, if anywhere
}

// A PeerResult is one peer system's figures on the same files as loaderd,
// or why it has none.
type PeerResult struct {
	Name     string            `json:"name"`               // as --peer names it: dali, tfdata, torchvision
	Label    string            `json:"label"`              // as the table names it
	Python   string            `json:"python,omitempty"`   // the interpreter that ran it
	Versions map[string]string `json:"versions,omitempty"` // framework, Python and numpy versions it printed
	// Cold has a point per variant and worker count (threads, or
	// DataLoader num_workers; 0 is in-process): one epoch's work per
	// image, Options.PeerEpochs epochs per run.
	Cold []Point `json:"cold,omitempty"`
	// MultiEpoch is the variant that keeps decoded images across epochs
	// (tf.data's cache()), over Settings.Epochs epochs at the most workers,
	// the decoding epoch included.
	MultiEpoch []Point `json:"multi_epoch,omitempty"`
	// GPU are the cold variants decoding on an NVIDIA GPU (DALI's mixed
	// backend), measured where one is found; not in the CPU ratios.
	GPU   []Point `json:"gpu,omitempty"`
	Error string  `json:"error,omitempty"` // why it has no figures
}

// PeerErr returns an error naming every peer of r that could not run, or
// nil.
func (r *Report) PeerErr() error {
	var errs []error
	for _, p := range r.Peers {
		if p.Error != "" {
			errs = append(errs, errors.New(p.Error)) // it names the peer

		}
	}
	return errors.Join(errs...)
}

// Machine describes where the figures were taken.
type Machine struct {
	CPU        string `json:"cpu"` // model name from /proc/cpuinfo
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Decoder    string `json:"decoder"`
	Time       string `json:"time"` // RFC 3339, start of the run
	// Load averages (1 minute, /proc/loadavg) at the start and the end of
	// the run: above about Cores/2 other work competed and figures are noisy.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
}

// DatasetInfo describes the images every phase ran over.
type DatasetInfo struct {
	Source        string  `json:"source"`        // Options.Data, or "generated"
	Path          string  `json:"path"`          // directory the phases read
	Images        int     `json:"images"`        // images benchmarked
	SourceImages  int     `json:"source_images"` // images in Source
	Classes       int     `json:"classes"`
	Bytes         int64   `json:"bytes"`        // file bytes of the Images
	BytesPerPixel float64 `json:"bytes_per_px"` // file bytes / decoded pixels
	MeanPixels    float64 `json:"mean_pixels"`  // decoded pixels per image
	Pipeline      string  `json:"pipeline"`     // canonical text
	RowBytes      int     `json:"row_bytes"`    // bytes of one augmented sample
}

// Settings are the options a report was measured with, defaults filled.
type Settings struct {
	MaxWorkers    int      `json:"max_workers"`
	Epochs        int      `json:"fused_epochs"`
	Clients       []int    `json:"clients"`
	BatchSize     int      `json:"batch_size"`
	MaxImages     int      `json:"max_images"`
	TransferBytes int64    `json:"transfer_bytes"`
	Seed          uint64   `json:"seed"`
	Peers         []string `json:"peers,omitempty"`
	PeerEpochs    int      `json:"peer_epochs,omitempty"`
}

// A Point is one measured configuration: the median of the repeats, with
// their minimum and maximum.
type Point struct {
	Workers int    `json:"workers,omitempty"` // workers, or the peer's threads or num_workers
	Clients int    `json:"clients,omitempty"` // concurrent Flight clients
	Epochs  int    `json:"epochs,omitempty"`  // epochs per precompute call or peer run
	Variant string `json:"variant,omitempty"` // the peer's way of doing the work
	// CPUCores is CPU seconds per second while timed (median of the
	// repeats): cores kept busy. Cold, precompute and peer points only.
	CPUCores     float64   `json:"cpu_cores,omitempty"`
	ImagesPerSec float64   `json:"images_per_sec"`
	GBPerSec     float64   `json:"gb_per_sec,omitempty"` // payload bytes (1e9/s), warm only
	Min          float64   `json:"min"`                  // images/s, slowest repeat
	Max          float64   `json:"max"`                  // images/s, fastest repeat
	Runs         []float64 `json:"runs"`                 // images/s of each repeat
	Images       int64     `json:"images"`               // images per repeat
	Bytes        int64     `json:"bytes,omitempty"`      // payload bytes per repeat, warm only
}

// Limits are the machine's own ceilings, measured in the same run.
type Limits struct {
	Memcpy   Rate   `json:"memcpy"`
	Loopback []Rate `json:"loopback"` // TCP over 127.0.0.1, per stream count
}

// A Rate is a measured transfer rate in GB/s (1e9 bytes per second).
type Rate struct {
	Streams       int       `json:"streams"`
	GBPerSec      float64   `json:"gb_per_sec"`
	Min           float64   `json:"min"`
	Max           float64   `json:"max"`
	Runs          []float64 `json:"runs"`
	SamplesPerSec float64   `json:"samples_per_sec"` // GBPerSec in rows of Dataset.RowBytes
	Bytes         int64     `json:"bytes"`           // bytes moved per repeat
}

// Ratios compare loaderd with the best peer and with the machine's limits.
type Ratios struct {
	// Peer compares each cold worker count with the fastest peer
	// configuration at that many workers.
	Peer []PeerRatio `json:"peer,omitempty"`
	// Precompute compares K fused epochs with the fastest peer's rate per
	// epoch over K epochs at the same workers (its multi-epoch variant or
	// its cold rate, whichever is faster).
	Precompute *PeerRatio `json:"precompute,omitempty"`
	// WarmOverPeer is the best warm images/s over the best peer's best
	// cold images/s.
	WarmOverPeer float64       `json:"warm_over_peer,omitempty"`
	Served       []ServedRatio `json:"served,omitempty"`
	// WarmOverCold is the best warm images/s over the best cold images/s.
	WarmOverCold float64 `json:"warm_over_cold,omitempty"`
	// Python compares each Python client with the Go client and loopback.
	Python []PythonRatio `json:"python,omitempty"`
}

// A PeerRatio compares loaderd at Workers workers with the fastest peer
// configuration at as many workers (a peer's num_workers 0, in-process,
// counts as one).
type PeerRatio struct {
	Workers     int     `json:"workers"`
	Loaderd     float64 `json:"loaderd_images_per_sec"`
	Peer        string  `json:"peer"`
	Variant     string  `json:"variant"`
	PeerWorkers int     `json:"peer_workers"`
	PeerRate    float64 `json:"peer_images_per_sec"`
	Ratio       float64 `json:"ratio"` // Loaderd / PeerRate
	// PerCPU is the ratio of images per CPU-second, where both CPU uses
	// are known; 0 otherwise.
	PerCPU float64 `json:"per_cpu,omitempty"`
}

// A ServedRatio compares the warm GB/s at Clients clients with loopback TCP
// at Streams streams (the most streams measured, up to Clients).
type ServedRatio struct {
	Clients  int     `json:"clients"`
	Streams  int     `json:"streams"`
	Served   float64 `json:"served_gb_per_sec"`
	Loopback float64 `json:"loopback_gb_per_sec"`
	Ratio    float64 `json:"ratio"` // Served / Loopback
}

// bestPeer returns the fastest peer point at loaderd worker count w over
// every peer that ran, with the peer's name, and false if none.
func (r *Report) bestPeer(w int) (Point, string, bool) {
	var best Point
	name, found := "", false
	for i := range r.Peers {
		if p, ok := r.Peers[i].best(w); ok && (!found || p.ImagesPerSec > best.ImagesPerSec) {
			best, name, found = p, r.Peers[i].Name, true
		}
	}
	return best, name, found
}

// bestPeerEpochs returns the fastest peer rate per epoch over k epochs at
// w workers: a multi-epoch point over k epochs, or a cold point (whose
// rate does not depend on the epochs).
func (r *Report) bestPeerEpochs(w, k int) (Point, string, bool) {
	best, name, found := r.bestPeer(w)
	for _, res := range r.Peers {
		for _, p := range res.MultiEpoch {
			if p.Workers == w && p.Epochs == k && (!found || p.ImagesPerSec > best.ImagesPerSec) {
				best, name, found = p, res.Name, true
			}
		}
	}
	return best, name, found
}

func peerRatio(w int, ours, cores float64, peer Point, name string) PeerRatio {
	pr := PeerRatio{Workers: w, Loaderd: ours, Peer: name, Variant: peer.Variant, PeerWorkers: peer.Workers,
		PeerRate: peer.ImagesPerSec, Ratio: ours / peer.ImagesPerSec}
	if cores > 0 && peer.CPUCores > 0 {
		pr.PerCPU = (ours / cores) / (peer.ImagesPerSec / peer.CPUCores)
	}
	return pr
}

// computeRatios derives the ratios from the measured points.
func (r *Report) computeRatios() Ratios {
	var out Ratios
	var bestPeer float64
	for _, c := range r.Cold {
		if p, name, ok := r.bestPeer(c.Workers); ok && p.ImagesPerSec > 0 {
			out.Peer = append(out.Peer, peerRatio(c.Workers, c.ImagesPerSec, c.CPUCores, p, name))
			bestPeer = max(bestPeer, p.ImagesPerSec)
		}
	}
	for _, q := range r.Precompute {
		if q.Epochs < 2 {
			continue
		}
		if p, name, ok := r.bestPeerEpochs(q.Workers, q.Epochs); ok && p.ImagesPerSec > 0 {
			pr := peerRatio(q.Workers, q.ImagesPerSec, q.CPUCores, p, name)
			out.Precompute = &pr
		}
	}
	for _, p := range r.Warm {
		var lb *Rate
		for i := range r.Limits.Loopback {
			l := &r.Limits.Loopback[i]
			if l.Streams <= max(p.Clients, 1) && (lb == nil || l.Streams > lb.Streams) {
				lb = l
			}
		}
		if lb != nil && lb.GBPerSec > 0 {
			out.Served = append(out.Served, ServedRatio{Clients: p.Clients, Streams: lb.Streams,
				Served: p.GBPerSec, Loopback: lb.GBPerSec, Ratio: p.GBPerSec / lb.GBPerSec})
		}
	}
	var bestCold, bestWarm float64
	for _, p := range r.Cold {
		bestCold = max(bestCold, p.ImagesPerSec)
	}
	for _, p := range r.Warm {
		bestWarm = max(bestWarm, p.ImagesPerSec)
	}
	if bestCold > 0 {
		out.WarmOverCold = bestWarm / bestCold
	}
	if bestPeer > 0 {
		out.WarmOverPeer = bestWarm / bestPeer
	}
	out.Python = r.pythonRatios()
	return out
}

// WriteJSON writes every figure of r, indented, to path.
func (r *Report) WriteJSON(path string) error {
	c := *r
	c.Ratios = r.computeRatios()
	b, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write report: %w", err)
	}
	return nil
}
