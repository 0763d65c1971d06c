package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ErrPeerUnavailable reports a peer that cannot run here: no Python, no
// torch, no script. Run records it in Report.PeerError and goes on.
var ErrPeerUnavailable = errors.New("bench: peer unavailable")

const (
	defaultPython     = "/usr/bin/python3"
	defaultPeerScript = "../shared/peers/torchvision_baseline.py"
)

// peerRun is one invocation of the torchvision baseline script.
type peerRun struct {
	Python  string
	Script  string
	Dir     string
	Workers []int // num_workers values
	Epochs  int
	Repeats int
	Stderr  io.Writer // progress lines, may be nil
}

// peerLine is what the script prints per configuration and repeat.
type peerLine struct {
	System       string   `json:"system"`
	Mode         string   `json:"mode"`
	Workers      *int     `json:"workers"`
	Images       int64    `json:"images"`
	Seconds      float64  `json:"seconds"`
	ImagesPerSec *float64 `json:"images_per_s"`
	Torch        string   `json:"torch"`
	Torchvision  string   `json:"torchvision"`
	Pillow       string   `json:"pillow"`
	TorchThreads int      `json:"torch_threads"`
}

// findPeerScript returns the script to run: explicit if given, else the
// default path relative to the working directory.
func findPeerScript(explicit string) (string, error) {
	p := explicit
	if p == "" {
		p = defaultPeerScript
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%w: script %s: %w", ErrPeerUnavailable, p, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return "", fmt.Errorf("%w: script: %w", ErrPeerUnavailable, err)
	}
	return abs, nil
}

// run executes the script and returns one Point per num_workers value (in
// the order given), plus a line naming the peer's versions. A missing
// interpreter or torch gives an error wrapping ErrPeerUnavailable.
func (pr *peerRun) run(ctx context.Context) ([]Point, string, error) {
	if _, err := os.Stat(pr.Python); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrPeerUnavailable, err)
	}
	ws := make([]string, len(pr.Workers))
	for i, w := range pr.Workers {
		ws[i] = strconv.Itoa(w)
	}
	cmd := exec.CommandContext(ctx, pr.Python, pr.Script, pr.Dir,
		"--workers", strings.Join(ws, ","),
		"--epochs", strconv.Itoa(pr.Epochs),
		"--repeats", strconv.Itoa(pr.Repeats))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second // DataLoader workers may hold the pipes after a kill
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", fmt.Errorf("bench: peer: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrPeerUnavailable, err)
	}
	var lines []peerLine
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var l peerLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Workers == nil || l.ImagesPerSec == nil {
			continue // not a result line
		}
		lines = append(lines, l)
		if pr.Stderr != nil {
			fmt.Fprintf(pr.Stderr, "peer: num_workers %d: %.0f images/s\n", *l.Workers, *l.ImagesPerSec)
		}
	}
	waitErr := cmd.Wait()
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("bench: peer: %w", err)
	}
	if waitErr != nil {
		msg := lastLine(stderr.String())
		if strings.Contains(stderr.String(), "No module named") {
			return nil, "", fmt.Errorf("%w: %s: %s", ErrPeerUnavailable, pr.Python, msg)
		}
		return nil, "", fmt.Errorf("bench: peer %s: %w: %s", pr.Script, waitErr, msg)
	}
	points, info := peerPoints(pr.Workers, lines)
	if len(points) == 0 {
		return nil, "", fmt.Errorf("bench: peer %s printed no results: %s", pr.Script, lastLine(stderr.String()))
	}
	return points, info, nil
}

// peerPoints groups the script's lines by num_workers into Points.
func peerPoints(workers []int, lines []peerLine) ([]Point, string) {
	var points []Point
	info := ""
	for _, w := range workers {
		var runs []float64
		var images int64
		for _, l := range lines {
			if *l.Workers == w {
				runs = append(runs, *l.ImagesPerSec)
				images = l.Images
			}
		}
		if len(runs) == 0 {
			continue
		}
		s := summarize(runs)
		points = append(points, Point{Workers: w, ImagesPerSec: s.Median, Min: s.Min, Max: s.Max,
			Runs: runs, Images: images})
	}
	if len(lines) > 0 {
		l := lines[0]
		info = fmt.Sprintf("%s DataLoader, torch %s, torchvision %s, pillow %s, %d torch threads",
			orDash(l.System), orDash(l.Torch), orDash(l.Torchvision), orDash(l.Pillow), l.TorchThreads)
	}
	return points, info
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
