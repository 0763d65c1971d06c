package bench

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRunPythonClients(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o := tinyOptions(t)
	o.Peers, o.Clients = nil, []int{1}
	var err error
	if o.Python, err = filepath.Abs("testdata/fakepython.sh"); err != nil {
		t.Fatal(err)
	}
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Python) != 5 { // the package's two clients over Flight, then in place
		t.Fatalf("%d Python clients, want 5: %+v", len(r.Python), r.Python)
	}
	if l := r.Python[3]; l.Name != "loaderd-local" || l.Error != "" || l.Point.ImagesPerSec != 2100 {
		t.Errorf("loaderd-local row %+v", l)
	}
	pa, pkg, ds := r.Python[0], r.Python[1], r.Python[2]
	if pa.Name != "pyarrow" || pa.Error != "" || pa.Point.ImagesPerSec != 1050 || pa.Point.Min != 1000 ||
		!near(pa.Point.GBPerSec, 0.16) || !near(pa.CPUPerGB, 0.85) || pa.Versions["pyarrow"] != "21.0.0" {
		t.Errorf("pyarrow row %+v; want the median of the script's two runs", pa)
	}
	if pkg.Name != "loaderd" || pkg.Error != "" || pkg.Point.ImagesPerSec != 2100 {
		t.Errorf("loaderd row %+v", pkg)
	}
	if ds.Name != "dataset" || !strings.Contains(ds.Error, "torch not importable") {
		t.Errorf("dataset row %+v; want the script's error", ds)
	}
	if err := r.PythonErr(); err == nil || !strings.Contains(err.Error(), "dataset") {
		t.Errorf("PythonErr() = %v; want the dataset client named", err)
	}
	ratios := r.computeRatios().Python
	if len(ratios) != 3 || ratios[1].OverGo <= 0 || ratios[1].OverLoopback <= 0 ||
		!near(ratios[1].OverGo, 0.315/r.Warm[0].GBPerSec) {
		t.Errorf("Python ratios %+v; want both measured clients over the Go client and loopback", ratios)
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PYTHON CLIENTS", "pyarrow.flight", "loaderd.torch.LoaderdDataset  not measured",
		"python client dataset not measured: torch not importable"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
