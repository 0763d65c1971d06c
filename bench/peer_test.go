package bench

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

func TestPeerRun(t *testing.T) {
	tests := []struct {
		name        string
		python      string
		script      string
		wantErr     error // nil: success
		wantPoints  int
		unavailable bool
	}{
		{name: "results parsed", python: "/bin/sh", script: "testdata/fakepeer.sh", wantPoints: 3},
		{name: "missing interpreter", python: "/nonexistent/python3", script: "testdata/fakepeer.sh", wantErr: ErrPeerUnavailable},
		{name: "no torch module", python: "/bin/sh", script: "testdata/nomodule.sh", wantErr: ErrPeerUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			script, err := filepath.Abs(tc.script)
			if err != nil {
				t.Fatal(err)
			}
			pr := &peerRun{Python: tc.python, Script: script, Dir: t.TempDir(), Workers: []int{0, 1, 2}, Epochs: 2, Repeats: 3}
			points, info, err := pr.run(context.Background())
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("run: err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if len(points) != tc.wantPoints || info == "" {
				t.Fatalf("run: %d points, info %q; want %d points and info", len(points), info, tc.wantPoints)
			}
			for i, p := range points {
				base := float64(100 * (i + 1))
				if p.Workers != i || p.ImagesPerSec != base+1 || p.Min != base || p.Max != base+2 || len(p.Runs) != 3 {
					t.Errorf("point %d = %+v; want workers %d, median %v, min %v, max %v", i, p, i, base+1, base, base+2)
				}
			}
		})
	}
}

func TestFindPeerScript(t *testing.T) {
	if _, err := findPeerScript(filepath.Join(t.TempDir(), "absent.py")); !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("findPeerScript(absent) err = %v, want ErrPeerUnavailable", err)
	}
	if p, err := findPeerScript("testdata/fakepeer.sh"); err != nil || !filepath.IsAbs(p) {
		t.Fatalf("findPeerScript(testdata/fakepeer.sh) = %q, %v; want an absolute path", p, err)
	}
}
