package shardcache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// crashEnv makes TestCrashHelper act: "loop:DIR" rewrites shards forever,
// "hold:DIR" runs holdMidShard, "fill:DIR" writes the missing shards and
// returns, "full:DIR" runs diskFullHelper.
const crashEnv = "SHARDCACHE_CRASH_HELPER"

const (
	crashEpochs = 2
	crashShards = 24
)

func crashShardSize(shard int) int64 { return 64<<10 + int64(shard)*4096 }

// TestCrashHelper is the subprocess of TestCrash; without crashEnv it does
// nothing.
func TestCrashHelper(t *testing.T) {
	mode, dir, ok := strings.Cut(os.Getenv(crashEnv), ":")
	if !ok {
		return
	}
	c, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	defer c.Close()
	if mode == "full" {
		diskFullHelper(t, c)
		return
	}
	fmt.Println("ready") // the parent starts its kill timer now
	r := rand.New(rand.NewPCG(uint64(os.Getpid()), 3))
	if mode == "hold" {
		holdMidShard(t, c, r)
		return
	}
	for {
		for _, i := range r.Perm(crashEpochs * crashShards) {
			k, s := testKey(i/crashShards), i%crashShards
			if mode == "fill" && c.Has(k, s) {
				continue
			}
			if err := writeShardSlowly(c, k, s, crashShardSize(s)); err != nil {
				t.Fatalf("helper: shard %d of epoch %d: %v", s, k.Epoch, err)
			}
		}
		if mode == "fill" {
			return
		}
	}
}

// holdMidShard writes two shards, then half of a third, says "holding" and
// waits to be killed (or for stdin to close).
func holdMidShard(t *testing.T, c *Cache, r *rand.Rand) {
	for range 2 {
		k, s := testKey(r.IntN(crashEpochs)), r.IntN(crashShards)
		if err := writeShardSlowly(c, k, s, crashShardSize(s)); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	k, s := testKey(r.IntN(crashEpochs)), r.IntN(crashShards)
	w, err := c.Create(k, s, crashShardSize(s), prepareSkeleton)
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	copy(w.Data()[:w.Size()/2], pattern(k, s, crashShardSize(s)))
	fmt.Println("holding")
	_, _ = io.Copy(io.Discard, os.Stdin)
	w.Abort()
}

// writeShardSlowly fills the mapping in pieces, as workers writing rows do,
// so that kills land in the middle of writes too.
func writeShardSlowly(c *Cache, k Key, shard int, size int64) error {
	w, err := c.Create(k, shard, size, prepareSkeleton)
	if err != nil {
		return err
	}
	defer w.Abort()
	want := pattern(k, shard, size)
	for off := 0; off < len(want); off += 8 << 10 {
		copy(w.Data()[off:], want[off:min(off+8<<10, len(want))])
	}
	return w.Commit()
}

// startHelper starts TestCrashHelper in mode on dir and waits for it to
// open the cache. The caller reads further lines from out and must Wait.
func startHelper(t *testing.T, mode, dir string) (cmd *exec.Cmd, out *bufio.Reader, stderr *bytes.Buffer) {
	t.Helper()
	cmd = exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+mode+":"+dir)
	stderr = new(bytes.Buffer)
	cmd.Stderr = stderr
	if _, err := cmd.StdinPipe(); err != nil { // open until Wait: "hold" blocks on it
		t.Fatal(err)
	}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out = bufio.NewReader(pipe)
	if line, err := out.ReadString('\n'); err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper did not start: %q, %v; stderr: %s", line, err, stderr)
	}
	return cmd, out, stderr
}

// kill SIGKILLs the helper and checks that it died of it.
func kill(t *testing.T, cmd *exec.Cmd, stderr *bytes.Buffer) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, not by SIGKILL; stderr: %s", err, stderr)
	}
}

// TestCrash kills a process writing shards at random moments, then checks
// that every shard the cache lists is complete and that a rerun completes
// the epoch.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill delays seeded with %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	// First a kill that surely lands mid-shard, then kills at random moments.
	cmd, out, stderr := startHelper(t, "hold", dir)
	if line, err := out.ReadString('\n'); err != nil || line != "holding\n" {
		t.Fatalf("hold helper said %q, %v; stderr: %s", line, err, stderr)
	}
	kill(t, cmd, stderr)
	// The shard in progress is the shard's partial file (partial.go): kept,
	// but without a journal none of its rows is trusted.
	if got := append(filesUnder(t, dir, tmpSuffix), filesUnder(t, dir, partialSuffix)...); len(got) != 1 {
		t.Fatalf("after a kill mid-shard: files in progress %v, want 1", got)
	}
	if got := filesUnder(t, dir, journalSuffix); len(got) != 0 {
		t.Fatalf("after a kill mid-shard: journals %v, want none (nothing was suspended)", got)
	}
	const kills = 6
	torn := 0
	for range kills {
		cmd, _, stderr := startHelper(t, "loop", dir)
		time.Sleep(time.Duration(20+r.IntN(181)) * time.Millisecond) // the point: a random moment
		kill(t, cmd, stderr)
		if len(filesUnder(t, dir, tmpSuffix))+len(filesUnder(t, dir, partialSuffix)) > 0 {
			torn++
		}
	}
	t.Logf("%d of %d random kills left a shard half written", torn, kills)

	verify := func(wantAll bool) {
		t.Helper()
		c, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := filesUnder(t, dir, tmpSuffix); len(got) != 0 {
			t.Errorf("temporary files after Open: %v", got)
		}
		total := 0
		for e := range crashEpochs {
			k := testKey(e)
			shards := c.Shards(k)
			total += len(shards)
			if wantAll && len(shards) != crashShards {
				t.Errorf("epoch %d has %d shards after the rerun, want %d", e, len(shards), crashShards)
			}
			for _, s := range shards {
				if err := checkShard(c, k, s, crashShardSize(s)); err != nil {
					t.Errorf("shard %d of epoch %d: %v", s, e, err)
				}
			}
		}
		t.Logf("%d shards committed and verified", total)
	}
	verify(false)

	cmd, _, stderr = startHelper(t, "fill", dir)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rerun: %v; stderr: %s", err, stderr)
	}
	verify(true)
}

// diskFullHelper runs in a subprocess whose file size limit makes block
// allocation fail as a full disk would (EFBIG instead of ENOSPC).
func diskFullHelper(t *testing.T, c *Cache) {
	const limit = 1 << 20
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: limit}); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	k := testKey(0)
	w, err := c.Create(k, 0, 4*limit, prepareSkeleton)
	if !errors.Is(err, syscall.EFBIG) {
		if err == nil {
			w.Abort()
		}
		t.Fatalf("Create past the file size limit = %v, want EFBIG", err)
	}
	if c.Has(k, 0) || c.Usage() != 0 {
		t.Fatalf("after the failed Create: Has = %v, Usage = %d", c.Has(k, 0), c.Usage())
	}
	if got := filesUnder(t, c.Dir(), "shard-"); len(got) != 0 {
		t.Fatalf("files left: %v", got)
	}
	if err := writeShard(c, k, 1, limit/2); err != nil {
		t.Fatalf("Create within the limit: %v", err)
	}
	if err := checkShard(c, k, 1, limit/2); err != nil {
		t.Fatal(err)
	}
	fmt.Println("helper: disk full handled")
}

// TestDiskFull checks that a shard whose blocks cannot be allocated fails
// in Create, before any write into the mapping could fault, and leaves
// nothing behind.
func TestDiskFull(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"=full:"+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("helper: disk full handled")) {
		t.Fatalf("helper: %v\n%s", err, out)
	}
}
