package bench

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakePeerDir returns a directory holding testdata/fakepeer.sh under every
// peer script's name, except those in broken, which hold bad (a script
// file under testdata).
func fakePeerDir(t *testing.T, bad string, broken ...string) string {
	t.Helper()
	dir := t.TempDir()
	fake, err := os.ReadFile("testdata/fakepeer.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range peerSpecs {
		body := fake
		if slices.Contains(broken, s.Name) {
			if body, err = os.ReadFile(bad); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, s.Script), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// shFor runs every peer's script with /bin/sh.
func shFor(names ...string) map[string]string {
	m := map[string]string{}
	for _, n := range names {
		m[n] = "/bin/sh"
	}
	return m
}

func TestPeerRun(t *testing.T) {
	script, err := filepath.Abs("testdata/fakepeer.sh")
	if err != nil {
		t.Fatal(err)
	}
	nomodule, err := filepath.Abs("testdata/nomodule.sh")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		python     string
		script     string
		wantErr    error // nil: success
		wantPoints int
	}{
		{name: "results parsed", python: "/bin/sh", script: script, wantPoints: 6},
		{name: "missing interpreter", python: "/nonexistent/python3", script: script, wantErr: ErrPeerUnavailable},
		{name: "no framework module", python: "/bin/sh", script: nomodule, wantErr: ErrPeerUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pr := &peerRun{Name: "torchvision", Python: tc.python, Script: tc.script, Dir: t.TempDir(),
				Workers: []int{0, 1, 2}, Variants: []string{"pil", "tensor"}, Epochs: 2, Repeats: 3}
			points, versions, err := pr.run(context.Background())
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("run: err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if len(points) != tc.wantPoints || versions["torchvision"] != "fake" {
				t.Fatalf("run: %d points, versions %v; want %d points and versions", len(points), versions, tc.wantPoints)
			}
			for i, p := range points {
				v, w := i/3, i%3
				base := float64(120*max(w, 1) + 10*v)
				if p.Workers != w || p.Variant != pr.Variants[v] || p.ImagesPerSec != base+1 || p.Min != base ||
					p.Max != base+2 || len(p.Runs) != 3 || p.Epochs != 2 || p.CPUCores != 0.9*float64(max(w, 1)) {
					t.Errorf("point %d = %+v; want %s at %d workers, median %v, min %v, max %v", i, p, pr.Variants[v], w, base+1, base, base+2)
				}
			}
		})
	}
}

func TestParsePeers(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr bool
	}{
		{in: "", want: nil},
		{in: "all", want: []string{"dali", "tfdata", "torchvision"}},
		{in: "torchvision", want: []string{"torchvision"}},
		{in: "tfdata, dali", want: []string{"tfdata", "dali"}},
		{in: "pytorch", wantErr: true},
		{in: "dali,dali", wantErr: true},
		{in: "dali,", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParsePeers(tc.in)
		if tc.wantErr {
			if !errors.Is(err, ErrOptions) {
				t.Errorf("ParsePeers(%q) = %v, %v; want ErrOptions", tc.in, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParsePeers(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestPeerPython(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("LOADERD_PEERS_DIR", dir)
	dali, _ := findPeerSpec("dali")
	if _, err := peerPython(dali, ""); !errors.Is(err, ErrPeerUnavailable) || !strings.Contains(err.Error(), "setup.sh dali") {
		t.Fatalf("peerPython(dali) without a venv: %v; want ErrPeerUnavailable naming setup.sh", err)
	}
	venv := filepath.Join(dir, "dali", "bin", "python")
	if err := os.MkdirAll(filepath.Dir(venv), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(venv, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if p, err := peerPython(dali, ""); err != nil || p != venv {
		t.Fatalf("peerPython(dali) = %q, %v; want the venv %s", p, err, venv)
	}
	if p, err := peerPython(dali, "/bin/sh"); err != nil || p != "/bin/sh" {
		t.Fatalf("peerPython(dali, /bin/sh) = %q, %v; want /bin/sh", p, err)
	}
	if _, err := peerPython(dali, "/nonexistent/python"); !errors.Is(err, ErrPeerUnavailable) {
		t.Fatalf("peerPython(dali, /nonexistent) err = %v; want ErrPeerUnavailable", err)
	}
	tv, _ := findPeerSpec("torchvision")
	tv.Fallback = "/bin/sh" // stands in for Debian's /usr/bin/python3
	if p, err := peerPython(tv, ""); err != nil || p != "/bin/sh" {
		t.Fatalf("peerPython(torchvision) without a venv = %q, %v; want the fallback", p, err)
	}
}

// TestPeerScriptsEmbedded checks that every peer's script (and their
// shared module) is built into the binary, so bench needs no clone.
func TestPeerScriptsEmbedded(t *testing.T) {
	dir, err := writePeerScripts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range peerSpecs {
		b, err := os.ReadFile(filepath.Join(dir, s.Script))
		if err != nil || !strings.Contains(string(b), "import peerlib") {
			t.Errorf("embedded %s: %v; want the script", s.Script, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "peerlib.py")); err != nil {
		t.Error(err)
	}
}
