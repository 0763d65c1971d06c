package shardcache

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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
// "fill:DIR" writes the missing ones and returns, "full:DIR" runs
// diskFullHelper.
const crashEnv = "SHARDCACHE_CRASH_HELPER"

const (
	crashEpochs = 2
	crashShards = 24
)

func crashShardSize(shard int) int64 { return 256<<10 + int64(shard)*4096 }

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

// writeShardSlowly fills the mapping in pieces, as workers writing rows do,
// so that kills land in the middle of writes too.
func writeShardSlowly(c *Cache, k Key, shard int, size int64) error {
	w, err := c.Create(k, shard, size, prepareSkeleton)
	if err != nil {
		return err
	}
	defer w.Abort()
	want := pattern(k, shard, size)
	for off := 0; off < len(want); off += 16 << 10 {
		copy(w.Data()[off:], want[off:min(off+16<<10, len(want))])
	}
	return w.Commit()
}

func startHelper(t *testing.T, mode, dir string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+mode+":"+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ready\n" {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper did not start: %q, %v; stderr: %s", line, err, stderr.String())
	}
	return cmd, &stderr
}

// TestCrash kills a process writing shards at random moments, then checks
// that every shard the cache lists is complete and that a rerun completes
// the epoch.
func TestCrash(t *testing.T) {
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill delays seeded with %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	const kills = 7
	torn := 0
	for i := range kills {
		cmd, stderr := startHelper(t, "loop", dir)
		delay := time.Duration(20+r.IntN(181)) * time.Millisecond
		time.Sleep(delay) // the point of the test: a kill at a random moment
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d after %v: helper ended with %v, not by SIGKILL; stderr: %s", i, delay, err, stderr)
		}
		if len(filesUnder(t, dir, tmpSuffix)) > 0 {
			torn++ // killed in the middle of a shard
		}
	}

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
	t.Logf("%d of %d kills left a shard half written", torn, kills)
	if torn == 0 {
		t.Errorf("no kill landed while a shard was being written; the test exercised nothing")
	}
	verify(false)

	cmd, stderr := startHelper(t, "fill", dir)
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
