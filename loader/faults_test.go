package loader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/service"
)

// fxFault makes every read of the files of samples idx of l's "train" fail
// with err, for the first times attempts of each file (all of them when
// times is 0). It returns a function that lifts the fault.
func fxFault(t *testing.T, l *Loader, err error, times int, idx ...int) func() {
	t.Helper()
	d, _ := l.Dataset("train")
	bad := map[string]bool{}
	for _, i := range idx {
		bad[d.File(i)] = true
	}
	var mu sync.Mutex
	on, tries := true, map[string]int{}
	l.setReadFault(func(path string) error {
		mu.Lock()
		defer mu.Unlock()
		if !on || !bad[path] {
			return nil
		}
		tries[path]++
		if times > 0 && tries[path] > times {
			return nil
		}
		return &fs.PathError{Op: "read", Path: path, Err: err}
	})
	return func() {
		mu.Lock()
		on = false
		mu.Unlock()
	}
}

// fxShardFiles lists the committed shard files under a cache directory,
// relative to it: their names carry their checksums, so two caches with
// the same list hold the same bytes.
func fxShardFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !e.IsDir() && strings.HasSuffix(p, ".arrow") && !strings.Contains(e.Name(), ".tmp") {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// TestReadErrorIsNotUndecodable: a file that cannot be read ends the
// stream (or precompute) with Unavailable naming it, under either policy
// and on the uncached path too; nothing is marked bad, nothing of it is
// cached, and once the file reads again every request gets the right
// bytes, into a cache equal to a fresh one (SPEC §5).
func TestReadErrorIsNotUndecodable(t *testing.T) {
	const n, bad = 40, 21
	root := fxDataset(t, n)
	want := fxEpoch(t, root, 0, nil)
	freshDir := t.TempDir()
	fresh := fxLoader(t, root, fxCache(t, freshDir, 0), nil)
	if _, err := fresh.Precompute(context.Background(), "train", []int{0, 1}, nil); err != nil {
		t.Fatal(err)
	}
	freshFiles := fxShardFiles(t, freshDir)

	for _, tc := range []struct {
		name   string
		policy string
		budget int64
	}{
		{name: "substitute", policy: PolicySubstitute},
		{name: "fail", policy: PolicyFail},
		{name: "uncached", policy: PolicySubstitute, budget: 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := fxLoader(t, root, fxCache(t, dir, tc.budget), func(o *Options) { o.OnError = tc.policy })
			d, _ := l.Dataset("train")
			lift := fxFault(t, l, syscall.EIO, 0, bad)
			_, err := fxCollect(context.Background(), l, fxReq(nil))
			if !errors.Is(err, service.ErrUnreadable) || errors.Is(err, service.ErrDataLoss) ||
				!strings.Contains(err.Error(), d.Samples[bad].Path) || !strings.Contains(err.Error(), "input/output error") {
				t.Fatalf("stream with an unreadable file = %v; want ErrUnreadable naming %s and the cause", err, d.Samples[bad].Path)
			}
			if tc.budget == 0 {
				if _, err := l.Precompute(context.Background(), "train", []int{0, 1}, nil); !errors.Is(err, service.ErrUnreadable) {
					t.Fatalf("precompute with an unreadable file = %v; want ErrUnreadable", err)
				}
				if shards := l.cache.Shards(l.key(l.sets["train"].current(), 0)); slices.Contains(shards, bad/16) {
					t.Fatalf("shard %d of sample %d committed from a failed read (shards %v)", bad/16, bad, shards)
				}
			}
			if errs, _ := l.DatasetErrors(context.Background(), "train"); len(errs) != 0 || testutilUndecodable(l) != 0 {
				t.Fatalf("a read error marked samples undecodable: %+v", errs)
			}
			lift()
			got, err := fxCollect(context.Background(), l, fxReq(nil))
			if err != nil {
				t.Fatalf("stream once the file reads again: %v", err)
			}
			fxSame(t, "after the read error", want, got)
			if !slices.Contains(got.Index, bad) && tc.budget == 0 {
				t.Fatalf("sample %d missing from the epoch after its file reads again", bad)
			}
			if tc.budget > 0 {
				return
			}
			if _, err := l.Precompute(context.Background(), "train", []int{0, 1}, nil); err != nil {
				t.Fatal(err)
			}
			if got := fxShardFiles(t, dir); !slices.Equal(got, freshFiles) {
				t.Fatalf("cache after the read error holds %v; a fresh one %v", got, freshFiles)
			}
		})
	}
}

// TestReadRetried: reads that fail a few times, then succeed (a brief
// shortage of descriptors), cost retries, not the stream.
func TestReadRetried(t *testing.T) {
	root := fxDataset(t, 30)
	want := fxEpoch(t, root, 0, nil)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	fxFault(t, l, syscall.EMFILE, readAttempts-1, 0, 7, 29)
	got, err := fxCollect(context.Background(), l, fxReq(nil))
	if err != nil {
		t.Fatalf("stream over reads that fail %d times: %v", readAttempts-1, err)
	}
	fxSame(t, "after retried reads", want, got)
}

// TestFileRemovedAndRestored removes a file between requests, then puts
// it back: while it is gone the stream ends with FailedPrecondition naming
// it (the dataset changed) and nothing is marked bad; restored, with its
// size and mtime, the same listing streams the right bytes. Watched, the
// removal is a listing without the file and the restoration the first
// listing again.
func TestFileRemovedAndRestored(t *testing.T) {
	const n, gone = 30, 12
	root := fxDataset(t, n)
	want := fxEpoch(t, root, 0, nil)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	d, _ := l.Dataset("train")
	aside := filepath.Join(t.TempDir(), "aside")
	if err := os.Rename(d.File(gone), aside); err != nil {
		t.Fatal(err)
	}
	_, err := fxCollect(context.Background(), l, fxReq(nil))
	if !errors.Is(err, service.ErrStale) || !strings.Contains(err.Error(), d.Samples[gone].Path) || !strings.Contains(err.Error(), "vanished") {
		t.Fatalf("stream with a file gone = %v; want ErrStale naming %s", err, d.Samples[gone].Path)
	}
	if errs, _ := l.DatasetErrors(context.Background(), "train"); len(errs) != 0 {
		t.Fatalf("a missing file marked samples undecodable: %+v", errs)
	}
	if err := os.Rename(aside, d.File(gone)); err != nil {
		t.Fatal(err)
	}
	got, err := fxCollect(context.Background(), l, fxReq(nil))
	if err != nil {
		t.Fatalf("stream after the file is back: %v", err)
	}
	fxSame(t, "after the file is back", want, got)

	// Served with the watcher: the removal is a new listing without the
	// file, the restoration the old listing again, its cache entries valid.
	lw := fxLoader(t, root, fxCache(t, "", 0), nil)
	fxRun(t, lw)
	p0, err := lw.Plan(context.Background(), fxReq(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(d.File(gone), aside); err != nil {
		t.Fatal(err)
	}
	if p := fxNotice(t, lw, p0.Fingerprint); p.Records != n-1 {
		t.Fatalf("listing without the file: %d records; want %d", p.Records, n-1)
	}
	if got, err := fxCollect(context.Background(), lw, fxReq(nil)); err != nil || len(got.Index) != n-1 {
		t.Fatalf("stream without the file: %d rows, %v; want %d", len(got.Index), err, n-1)
	}
	if err := os.Rename(aside, d.File(gone)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(noticeWithin)
	for {
		p, err := lw.Plan(context.Background(), fxReq(nil))
		if err != nil {
			t.Fatal(err)
		}
		if p.Fingerprint == p0.Fingerprint {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restored file was not listed again within %v", noticeWithin)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err = fxCollect(context.Background(), lw, fxReq(func(r *service.Request) { r.Fingerprint = p0.Fingerprint }))
	if err != nil {
		t.Fatalf("stream after the file is back, watched: %v", err)
	}
	fxSame(t, "after the file is back, watched", want, got)
	if errs, _ := lw.DatasetErrors(context.Background(), "train"); len(errs) != 0 {
		t.Fatalf("a removed file marked samples undecodable: %+v", errs)
	}
}

// TestScanKinds: scan reports undecodable, unreadable and changed files
// apart, each with its reason (SPEC §5).
func TestScanKinds(t *testing.T) {
	root := fxDataset(t, 12)
	probe, err := OpenDataset("scan", root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probe.File(2), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDataset("scan", root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.File(5), fxImage(99, 20), 0o644); err != nil { // rewritten after the listing
		t.Fatal(err)
	}
	d.fault = func(path string) error {
		if path == d.File(9) {
			return &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}
		}
		return nil
	}
	bad, err := Scan(context.Background(), d, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		index  int64
		kind   string
		reason string
	}{
		{index: 2, kind: service.SampleUndecodable, reason: "decode"},
		{index: 5, kind: service.SampleChanged, reason: "size"},
		{index: 9, kind: service.SampleUnreadable, reason: "permission denied"},
	}
	if len(bad) != len(want) {
		t.Fatalf("scan found %+v; want samples 2, 5, 9", bad)
	}
	for k, w := range want {
		if g := bad[k]; g.Index != w.index || g.Kind != w.kind || !strings.Contains(g.Reason, w.reason) {
			t.Errorf("scan entry %d = %+v; want sample %d, %s, reason naming %q", k, g, w.index, w.kind, w.reason)
		}
	}
}

// Environment of TestFileLimitChild, set by TestLowFileLimit.
const (
	fdDataEnv  = "LOADERD_FDLIMIT_DATA"
	fdCacheEnv = "LOADERD_FDLIMIT_CACHE"
	fdOutEnv   = "LOADERD_FDLIMIT_OUT"
	fdSlackEnv = "LOADERD_FDLIMIT_SLACK"
)

// fdShardSize is the shard size of the low-limit test: 4 rows, so a cold
// shuffled epoch of 160 samples writes 40 shards at once.
const fdShardSize = 4

// TestFileLimitChild is the process TestLowFileLimit runs: it limits its
// open files (soft and hard) to those open now plus the slack, then streams
// a cold shuffled epoch and writes each row's index and hash, or the error,
// to the output file. Without that environment it has nothing to do.
func TestFileLimitChild(t *testing.T) {
	root, dir, out, slackText := os.Getenv(fdDataEnv), os.Getenv(fdCacheEnv), os.Getenv(fdOutEnv), os.Getenv(fdSlackEnv)
	if root == "" || dir == "" || out == "" {
		return
	}
	slack, err := strconv.Atoi(slackText)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	lim := syscall.Rlimit{Cur: uint64(len(fds) + slack), Max: uint64(len(fds) + slack)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer // the loader's errors: a TextHandler serializes its writes
	l := fxLoader(t, root, fxCache(t, dir, 0), func(o *Options) {
		o.ShardSize = fdShardSize
		o.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelError}))
	})
	got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.BatchSize = 8 }))
	l.Close() // waits for the commits
	var report strings.Builder
	fmt.Fprintf(&report, "limit %d\n", lim.Cur)
	if err != nil {
		fmt.Fprintf(&report, "error %v\n", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(logged.String()), "\n") {
		if line != "" {
			fmt.Fprintf(&report, "log %s\n", line)
		}
	}
	for r, i := range got.Index {
		fmt.Fprintf(&report, "row %d %x\n", i, sha256.Sum256(got.Images[r]))
	}
	if err := os.WriteFile(out, []byte(report.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLowFileLimit streams a cold shuffled epoch over small shards in a
// process whose open files are limited to a few more than it holds at
// start (SPEC §5): with a little room it streams every row right; with
// hardly any it streams right or ends with an error naming the shortage.
// Either way every shard it committed is one a fresh cache holds, and one
// it did not is one whose commit found no descriptor, and logged so.
func TestLowFileLimit(t *testing.T) {
	const n = 160
	root := fxDataset(t, n)
	want := fxEpoch(t, root, 0, nil)
	freshDir := t.TempDir()
	fresh := fxLoader(t, root, fxCache(t, freshDir, 0), func(o *Options) { o.ShardSize = fdShardSize })
	if _, err := fresh.Precompute(context.Background(), "train", []int{0}, nil); err != nil {
		t.Fatal(err)
	}
	freshFiles := fxShardFiles(t, freshDir)
	if len(freshFiles) != n/fdShardSize {
		t.Fatalf("fresh cache holds %d shards; want %d", len(freshFiles), n/fdShardSize)
	}
	for _, tc := range []struct {
		name    string
		slack   int
		mustRun bool
	}{
		{name: "some room", slack: 24, mustRun: true},
		{name: "hardly any", slack: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, out := t.TempDir(), filepath.Join(t.TempDir(), "rows")
			cmd := exec.Command(os.Args[0], "-test.run=^TestFileLimitChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), fdDataEnv+"="+root, fdCacheEnv+"="+dir, fdOutEnv+"="+out, fdSlackEnv+"="+strconv.Itoa(tc.slack))
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("child: %v\n%s", err, b)
			}
			report, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			rows, failure, lostCommits := 0, "", 0
			for _, line := range strings.Split(strings.TrimSpace(string(report)), "\n") {
				switch f := strings.Fields(line); f[0] {
				case "limit":
					t.Logf("open files limit %s", f[1])
				case "error":
					failure = line
				case "log":
					// A commit that found no free descriptor loses its shard
					// (the rows were served; the next stream computes them
					// again), and says so.
					if strings.Contains(line, "commit shard") && strings.Contains(line, "too many open files") {
						lostCommits++
					} else {
						t.Errorf("loader logged %s", line)
					}
				case "row":
					i, _ := strconv.Atoi(f[1])
					if f[2] != fmt.Sprintf("%x", sha256.Sum256(want[uint64(i)])) {
						t.Fatalf("row of sample %d differs from a fresh computation", i)
					}
					rows++
				}
			}
			switch {
			case failure != "" && tc.mustRun:
				t.Fatalf("stream under a low file limit: %s", failure)
			case failure != "" && !strings.Contains(failure, "too many open files"):
				t.Fatalf("stream under a tiny file limit failed without naming the shortage: %s", failure)
			case failure == "" && rows != n:
				t.Fatalf("stream sent %d rows; want %d", rows, n)
			}
			t.Logf("%d rows streamed; %q", rows, failure)
			got := fxShardFiles(t, dir)
			for _, f := range got {
				if !slices.Contains(freshFiles, f) {
					t.Fatalf("shard %s is not one a fresh cache holds", f)
				}
			}
			switch {
			case lostCommits > 0 && tc.mustRun:
				t.Fatalf("%d commits failed for lack of descriptors with room to spare", lostCommits)
			case failure == "" && len(got)+lostCommits != len(freshFiles):
				t.Fatalf("cache after the stream holds %d shards, %d commits failed for lack of descriptors; a fresh one holds %d",
					len(got), lostCommits, len(freshFiles))
			}
			if lostCommits > 0 {
				t.Logf("%d shard commits found no descriptor, logged", lostCommits)
			}
		})
	}
}

// TestScanBombUndecodable: a progressive JPEG with thousands of scans in a
// served dataset is undecodable under the default decoder limits, with a
// reason naming the limit (SPEC §5): substituted and listed by
// dataset-errors, or DataLoss under the fail policy. Limits the pipeline
// was given reach the decoder: raised, the file decodes, under another
// pipeline fingerprint.
func TestScanBombUndecodable(t *testing.T) {
	bomb, err := os.ReadFile("../augment/testdata/scanbomb.jpg")
	if err != nil {
		t.Fatal(err)
	}
	root := fxDataset(t, 12)
	if err := os.WriteFile(filepath.Join(root, "c1", "img0004b.jpg"), bomb, 0o644); err != nil {
		t.Fatal(err)
	}
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	d, _ := l.Dataset("train")
	bad := slices.IndexFunc(d.Samples, func(s Sample) bool { return s.Path == "c1/img0004b.jpg" })
	got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Shuffle = false }))
	if err != nil {
		t.Fatal(err)
	}
	if got.Index[bad] != uint64(bad+1) {
		t.Fatalf("row of the scan bomb holds sample %d; want the next one, %d", got.Index[bad], bad+1)
	}
	errs, _ := l.DatasetErrors(context.Background(), "train")
	if len(errs) != 1 || errs[0].Index != int64(bad) || errs[0].Kind != service.SampleUndecodable || !strings.Contains(errs[0].Reason, "scan limit") {
		t.Fatalf("dataset errors %+v; want sample %d undecodable, the reason naming the scan limit", errs, bad)
	}

	fail := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.OnError = PolicyFail })
	if _, err := fxCollect(context.Background(), fail, fxReq(nil)); !errors.Is(err, service.ErrDataLoss) || !strings.Contains(err.Error(), "scan limit") {
		t.Fatalf("stream under the fail policy = %v; want DataLoss naming the scan limit", err)
	}

	raised, err := augment.ParsePipeline(fxPipeline, &augment.PipelineOptions{Limits: augment.Limits{MaxScans: 3000}})
	if err != nil {
		t.Fatal(err)
	}
	lr := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.Pipeline = raised })
	got, err = fxCollect(context.Background(), lr, fxReq(func(r *service.Request) { r.Shuffle = false }))
	if err != nil {
		t.Fatal(err)
	}
	if errs, _ := lr.DatasetErrors(context.Background(), "train"); len(errs) != 0 || got.Index[bad] != uint64(bad) {
		t.Fatalf("with MaxScans 3000: row %d holds sample %d, errors %+v; want the file decoded", bad, got.Index[bad], errs)
	}
	if raised.Fingerprint() == l.pipe.Fingerprint() {
		t.Fatal("raised limits, same pipeline fingerprint: their rows would share cache entries")
	}
}
