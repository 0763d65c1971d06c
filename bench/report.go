package bench

import (
	"encoding/json"
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
	Peer       []Point `json:"peer"` // torchvision DataLoader, per num_workers (0 = in-process)
	PeerError  string  `json:"peer_error,omitempty"`
	PeerInfo   string  `json:"peer_info,omitempty"` // versions the peer printed

	Ratios  Ratios  `json:"ratios"`
	Seconds float64 `json:"seconds"` // wall time of the whole run

	JSONPath string `json:"-"` // where Run wrote the JSON, if anywhere
	PlotPath string `json:"-"` // where Run wrote the PNG, if anywhere
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
	MaxWorkers    int    `json:"max_workers"`
	Epochs        int    `json:"fused_epochs"`
	Clients       []int  `json:"clients"`
	BatchSize     int    `json:"batch_size"`
	MaxImages     int    `json:"max_images"`
	TransferBytes int64  `json:"transfer_bytes"`
	Seed          uint64 `json:"seed"`
	Peer          string `json:"peer,omitempty"`
	PeerEpochs    int    `json:"peer_epochs,omitempty"`
	PeerScript    string `json:"peer_script,omitempty"`
}

// A Point is one measured configuration: the median of the repeats, with
// their minimum and maximum.
type Point struct {
	Workers      int       `json:"workers,omitempty"` // workers, or the peer's num_workers
	Clients      int       `json:"clients,omitempty"` // concurrent Flight clients
	Epochs       int       `json:"epochs,omitempty"`  // epochs per precompute call
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

// Ratios compare loaderd with its peer and with the machine's limits.
type Ratios struct {
	Peer   []PeerRatio   `json:"peer,omitempty"`
	Served []ServedRatio `json:"served,omitempty"`
	// WarmOverCold is the best warm images/s over the best cold images/s.
	WarmOverCold float64 `json:"warm_over_cold,omitempty"`
}

// A PeerRatio compares loaderd's cold pipeline at Workers workers with the
// peer at PeerWorkers (num_workers 0, in-process, compares with 1 worker).
type PeerRatio struct {
	PeerWorkers int     `json:"peer_workers"`
	Workers     int     `json:"workers"`
	Loaderd     float64 `json:"loaderd_images_per_sec"`
	Peer        float64 `json:"peer_images_per_sec"`
	Ratio       float64 `json:"ratio"` // Loaderd / Peer
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

// computeRatios derives the ratios from the measured points.
func (r *Report) computeRatios() Ratios {
	var out Ratios
	for _, p := range r.Peer {
		w := max(p.Workers, 1)
		for _, c := range r.Cold {
			if c.Workers == w && p.ImagesPerSec > 0 {
				out.Peer = append(out.Peer, PeerRatio{PeerWorkers: p.Workers, Workers: w,
					Loaderd: c.ImagesPerSec, Peer: p.ImagesPerSec, Ratio: c.ImagesPerSec / p.ImagesPerSec})
			}
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
