package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loaderd/loaderd/tier/tiertest"
)

// shardFiles returns the complete shard files under dir, by their path
// relative to dir (epoch directory / shard-NNNNNN.<crc>.arrow), with their
// bytes.
func shardFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out, err := readShardFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// readShardFiles is shardFiles without the test: a missing dir is empty.
func readShardFiles(dir string) (map[string][]byte, error) {
	out := map[string][]byte{}
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return out, nil
	}
	re := regexp.MustCompile(`^e-[0-9a-f]{32}/shard-\d{6}\.[0-9a-f]{8}\.arrow$`)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if re.MatchString(filepath.ToSlash(rel)) {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[filepath.ToSlash(rel)] = b
		}
		return nil
	})
	return out, err
}

// sameShards fails unless got holds exactly want's files, byte for byte.
func sameShards(t *testing.T, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d shard files; want %d", len(got), len(want))
	}
	for name, b := range want {
		if g, ok := got[name]; !ok {
			t.Errorf("missing %s", name)
		} else if !bytes.Equal(g, b) {
			t.Errorf("%s differs", name)
		}
	}
}

// TestPrecomputeParts: the parts of a distributed precompute, run in any
// order on separate machines (cache directories), one killed and run
// again, leave in the tier exactly the shard files of one machine's
// precompute, byte for byte; a rerun of a finished part computes and
// uploads nothing.
func TestPrecomputeParts(t *testing.T) {
	data := smallData(t, 38, false)
	common := []string{"--data", "d=" + data, "--pipeline", tinyPipeline, "--epochs", "0-1", "--shard-size", "4", "--workers", "2", "--log-level", "warn"}
	ref := t.TempDir()
	if code, out, stderr := runCLI(t, append([]string{"precompute", "--cache-dir", ref}, common...)...); code != 0 {
		t.Fatalf("reference precompute: exit %d\n%s%s", code, out, stderr)
	}
	want := shardFiles(t, ref)
	if len(want) != 20 { // 2 epochs × 10 shards
		t.Fatalf("reference precompute left %d shard files; want 20", len(want))
	}

	run := func(t *testing.T, url, objects string) {
		part := func(k string) (int, string, string) {
			return runCLI(t, append([]string{"precompute", "--cache-dir", t.TempDir(), "--remote-cache", url, "--part", k}, common...)...)
		}
		// Part 1/3 is killed once it has uploaded a shard, then run again.
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			defer cancel()
			for ctx.Err() == nil {
				if got, _ := readShardFiles(objects); len(got) > 0 {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		var outb, errb bytes.Buffer
		err := runCtx(ctx, append([]string{"precompute", "--cache-dir", t.TempDir(), "--remote-cache", url, "--part", "1/3"}, common...), &outb, &errb)
		cancel()
		t.Logf("killed part 1/3: %v", err)
		for _, k := range []string{"2/3", "0/3", "1/3"} {
			if code, out, stderr := part(k); code != 0 {
				t.Fatalf("part %s: exit %d\n%s%s", k, code, out, stderr)
			}
		}
		sameShards(t, shardFiles(t, objects), want)
		// Every part is done: a rerun computes and uploads nothing.
		code, out, stderr := part("0/3")
		if code != 0 || !strings.Contains(out, "0 uploaded; 0 samples computed") || !strings.Contains(out, "8 shards, 8 already in") {
			t.Errorf("rerun of part 0/3: exit %d\n%s%s", code, out, stderr)
		}
	}
	t.Run("file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "tier")
		run(t, "file://"+dir, dir)
	})
	t.Run("s3", func(t *testing.T) {
		s3 := tiertest.StartS3(t)
		s3.Setenv(t)
		run(t, s3.URL("team/cache"), filepath.Join(s3.Dir, s3.Bucket, "team", "cache"))
	})
	// A part without a tier fills its own cache with its shards only.
	t.Run("local", func(t *testing.T) {
		dirs := []string{t.TempDir(), t.TempDir()}
		union := map[string][]byte{}
		for k, dir := range dirs {
			code, out, stderr := runCLI(t, append([]string{"precompute", "--cache-dir", dir, "--part", []string{"0/2", "1/2"}[k]}, common...)...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, stderr)
			}
			got := shardFiles(t, dir)
			if len(got) != 10 {
				t.Errorf("part %d/2 left %d shard files; want 10", k, len(got))
			}
			for name, b := range got {
				union[name] = b
			}
		}
		sameShards(t, union, want)
	})
}

// runCtx runs the command line in-process under ctx.
func runCtx(ctx context.Context, args []string, stdout, stderr *bytes.Buffer) error {
	return run(ctx, args, stdout, stderr)
}

func TestPartUsage(t *testing.T) {
	data := smallData(t, 4, false)
	for _, tc := range []struct{ part, want string }{
		{"3", "want K/N"},
		{"3/3", "0 ≤ K < N = 3"},
		{"-1/2", "0 ≤ K < N"},
		{"0/0", "N = 0"},
	} {
		code, _, stderr := runCLI(t, "precompute", "--data", "x="+data, "--epochs", "0", "--part", tc.part, "--cache-dir", t.TempDir())
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("--part %s: exit %d, %s; want exit 2 mentioning %q", tc.part, code, stderr, tc.want)
		}
	}
	code, _, stderr := runCLI(t, "precompute", "--data", "x="+data, "--epochs", "0", "--remote-cache", "s3://AKID:topsecret@b/p", "--cache-dir", t.TempDir())
	if code != exitUsage || !strings.Contains(stderr, "credentials in the URL") || strings.Contains(stderr, "topsecret") {
		t.Errorf("--remote-cache with credentials: exit %d, %s", code, stderr)
	}
}
