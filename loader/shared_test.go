package loader

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loaderd/loaderd/tier"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTierReadFailureLog: a row the shared tier lists but fails to read
// is computed instead, with a warning saying so, when its requester is
// still there; when the requester left, the row is given up, nothing is
// computed, and no warning claims otherwise (a debug line says what
// happened).
func TestTierReadFailureLog(t *testing.T) {
	const n = 16 // one shard
	root := fxDataset(t, n)
	tierDir := t.TempDir()
	tierURL := "file://" + tierDir
	a := fxStartNode(t, root, "", tierURL, 0)
	for r := range 4 {
		a.stream(t, 0, r) // the shard commits, and goes to the tier
	}
	d, err := a.l.lookup("train")
	if err != nil {
		t.Fatal(err)
	}
	key := a.l.key(d, 0)
	a.stop()
	ctx := context.Background()
	watch, err := tier.Open(ctx, tierURL, &tier.Options{ListInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	waitFor(t, "the shard in the tier", func() bool {
		complete, _, err := watch.Epoch(key).Available(ctx, 0)
		return err == nil && complete
	})

	st, err := tier.Open(ctx, tierURL, nil) // a listing trusted 10 s
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logged syncBuffer
	b := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) {
		o.Tier = st
		o.Logger = slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	if complete, _, err := st.Epoch(key).Available(ctx, 0); err != nil || !complete {
		t.Fatalf("tier listing: complete %v, %v", complete, err)
	}
	// The tier's listing (trusted a while) names the shard; its data
	// object is gone: each read of a row fails.
	removed := 0
	filepath.WalkDir(tierDir, func(path string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && (strings.HasSuffix(path, ".arrow") || strings.HasSuffix(path, ".rows")) {
			if os.Remove(path) == nil {
				removed++
			}
		}
		return nil
	})
	if removed == 0 {
		t.Fatal("no data object in the tier to remove")
	}

	d, err = b.lookup("train")
	if err != nil {
		t.Fatal(err)
	}
	ep, leave, err := b.acquire(d, 0, workStream)
	if err != nil {
		t.Fatal(err)
	}
	defer leave()
	sh, p := ep.ShardOf(3)
	claim := func() {
		t.Helper()
		if claimed, err := sh.Request(p, false); !claimed || err != nil {
			t.Fatalf("row %d: claimed %v, %v; want a claim", p, claimed, err)
		}
	}

	// The requester left while the row was read: given up, not computed.
	left, cancel := context.WithCancelCause(ctx)
	cancel(context.Canceled)
	r := &runner{l: b, kind: workStream, pool: -1, fail: cancel}
	for try := 0; ; try++ {
		claim()
		if r.fetch(left, ep, sh, p) { // the read ran (fetch picks the slot or ctx at random)
			break
		}
		if try == 200 {
			t.Fatal("fetch never got to read the row")
		}
	}
	r.tasks.Wait()
	out := logged.String()
	if strings.Contains(out, "computing instead") || strings.Contains(out, "level=WARN") {
		t.Errorf("a row given up (its requester left) is logged as computed:\n%s", out)
	}
	if !strings.Contains(out, "its requester left") {
		t.Errorf("no debug line says the row was given up:\n%s", out)
	}
	if got := fxComputed(b, workStream); got != 0 {
		t.Errorf("%d rows computed for a requester that left; want 0", got)
	}

	// The requester is there: the row is computed instead, and the
	// warning says so.
	claim() // given up above: absent again
	live, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	r = &runner{l: b, kind: workStream, pool: -1, fail: stop}
	if !r.fetch(live, ep, sh, p) {
		t.Fatal("fetch refused a live request")
	}
	r.tasks.Wait()
	out = logged.String()
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "computing instead") {
		t.Errorf("a failed read computed instead is not warned of:\n%s", out)
	}
	if got := fxComputed(b, workStream); got != 1 {
		t.Errorf("%d rows computed after the failed read; want 1", got)
	}
	if s, err := sh.Acquire(p, false, true); err != nil || !s.Ready {
		t.Errorf("row %d after the fetch: %+v, %v; want it ready", p, s, err)
	} else if s.Release != nil {
		s.Release()
	}
}
