package bench

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sampleReport is a Report with every section filled by hand.
func sampleReport() *Report {
	pt := func(w, c, e int, ips float64) Point {
		return Point{Workers: w, Clients: c, Epochs: e, ImagesPerSec: ips, Min: ips * 0.9, Max: ips * 1.1,
			Runs: []float64{ips * 0.9, ips, ips * 1.1}, Images: 100}
	}
	r := &Report{
		Machine: Machine{CPU: "Test CPU", Cores: 2, GOMAXPROCS: 2, GoVersion: "go1.26", OS: "linux", Arch: "amd64", Decoder: "go"},
		Dataset: DatasetInfo{Source: "generated", Images: 100, SourceImages: 100, Classes: 4, Bytes: 4e6,
			BytesPerPixel: 0.3, Pipeline: "random_resized_crop(size=224,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)", RowBytes: 150528},
		Repeat:     3,
		Cold:       []Point{pt(1, 0, 0, 400), pt(2, 0, 0, 750)},
		Precompute: []Point{pt(2, 0, 1, 700), pt(2, 0, 4, 1400)},
		Peers: []PeerResult{
			{Name: "torchvision", Label: "torchvision DataLoader", Versions: map[string]string{"torch": "2"},
				Cold: []Point{pt(0, 0, 0, 500), pt(1, 0, 0, 480), pt(2, 0, 0, 900)}},
			{Name: "dali", Label: "DALI (CPU)", Error: "bench: peer unavailable: no python"},
			{Name: "tfdata", Label: "tf.data", Cold: []Point{pt(1, 0, 2, 450), pt(2, 0, 2, 800)},
				MultiEpoch: []Point{pt(2, 0, 4, 1000)}},
		},
		Limits: Limits{
			Memcpy:   Rate{Streams: 1, GBPerSec: 16, Min: 15, Max: 17},
			Loopback: []Rate{{Streams: 1, GBPerSec: 2, Min: 1.8, Max: 2.2, SamplesPerSec: 13000}, {Streams: 2, GBPerSec: 3, Min: 2.8, Max: 3.2, SamplesPerSec: 20000}},
		},
	}
	for _, c := range []int{1, 2, 4} {
		p := pt(0, c, 0, 8000+1000*float64(c))
		p.GBPerSec = p.ImagesPerSec * 150528 / 1e9
		r.Warm = append(r.Warm, p)
	}
	return r
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"COLD", "PRECOMPUTE", "WARM", "LIMITS", "PEERS",
		"loaderd/peer", "served/loopback",
		"0.80", // cold 1 worker / best peer, torchvision W=0: 400/500
		"0.83", // cold 2 workers / best peer, torchvision W=2: 750/900
		"1.40", // 4 fused epochs / tfdata cache 4 epochs: 1400/1000
		"peer dali FAILED: bench: peer unavailable: no python",
		"0.68 (1-stream TCP)", // warm 1 client 9000*150528/1e9 = 1.355 GB/s over 2 GB/s
		"[360–440]",           // noise of cold 1 worker
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestWriteJSONAndPlot(t *testing.T) {
	dir := t.TempDir()
	r := sampleReport()
	jsonPath, plotPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.png")
	if err := r.WriteJSON(jsonPath); err != nil {
		t.Fatal(err)
	}
	if err := r.WritePlot(plotPath); err != nil {
		t.Fatal(err)
	}
	checkJSON(t, jsonPath, true)
	checkPNG(t, plotPath)
}

// checkJSON asserts that every section of the report is in the JSON file.
func checkJSON(t *testing.T, path string, withPeer bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	sections := []string{"machine", "dataset", "cold", "precompute", "warm", "limits", "ratios"}
	if withPeer {
		sections = append(sections, "peers")
	}
	for _, k := range sections {
		if v, ok := m[k]; !ok || string(v) == "null" || string(v) == "[]" || string(v) == "{}" {
			t.Errorf("JSON section %q = %s; want content", k, v)
		}
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Machine.Cores == 0 || r.Machine.GoVersion == "" || r.Dataset.Images == 0 || r.Dataset.BytesPerPixel == 0 {
		t.Errorf("JSON machine/dataset incomplete: %+v %+v", r.Machine, r.Dataset)
	}
	if len(r.Limits.Loopback) == 0 || r.Limits.Memcpy.GBPerSec == 0 || len(r.Ratios.Served) == 0 {
		t.Errorf("JSON limits/ratios incomplete: %+v %+v", r.Limits, r.Ratios)
	}
	if withPeer && len(r.Ratios.Peer) == 0 {
		t.Errorf("JSON lacks peer ratios: %+v", r.Ratios)
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 300 {
		t.Fatalf("%s: %v, want a readable plot", path, b)
	}
}

func TestWriteTableBusyMachine(t *testing.T) {
	tests := []struct {
		name        string
		load        float64
		wantWarning bool
	}{
		{name: "quiet", load: 0.2, wantWarning: false},
		{name: "busy", load: 3.5, wantWarning: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sampleReport()
			r.Machine.LoadEnd = tc.load
			var b strings.Builder
			if err := r.WriteTable(&b); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(b.String(), "figures are noisy"); got != tc.wantWarning {
				t.Fatalf("load %.1f on 2 cores: warning %v, want %v:\n%s", tc.load, got, tc.wantWarning, b.String())
			}
		})
	}
}
