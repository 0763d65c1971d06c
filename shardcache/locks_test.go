package shardcache

import (
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// within fails t unless f returns before a generous deadline: a read that
// waits for I/O held up by the test never returns.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s waits for I/O it does not need", what)
	}
}

// reads runs the calls a stream makes on shard 0 of k.
func reads(t *testing.T, c *Cache, k Key) {
	t.Helper()
	within(t, "Has", func() { c.Has(k, 0) })
	within(t, "Usage", func() { c.Usage() })
	within(t, "Epochs", func() { c.Epochs() })
	within(t, "Open", func() {
		if m, err := c.Open(k, 0); err != nil {
			t.Errorf("Open: %v", err)
		} else {
			m.Release()
		}
	})
}

// TestReadsDuringDirectoryCreation holds up the creation of a new epoch's
// directory (its fs lock) and reads another epoch meanwhile: the cache's
// lock is free while a Create makes a directory and syncs it.
func TestReadsDuringDirectoryCreation(t *testing.T) {
	c := openCache(t, t.TempDir(), nil)
	k, k2 := testKey(0), testKey(1)
	mustWrite(t, c, k, 0, shardSize(0))
	c.mu.Lock()
	ep2 := c.entryLocked(k2)
	c.mu.Unlock()
	ep2.fs.Lock()
	created := make(chan error, 1)
	go func() { created <- writeShard(c, k2, 0, shardSize(0)) }()
	for c.Usage() == shardSize(0) { // until the Create has reserved its bytes
		runtime.Gosched()
		select {
		case err := <-created:
			t.Fatalf("Create finished with its directory's lock held: %v", err)
		default:
		}
	}
	reads(t, c, k)
	ep2.fs.Unlock()
	if err := <-created; err != nil {
		t.Fatal(err)
	}
	if !c.Has(k2, 0) {
		t.Fatal("the held-up shard was not committed")
	}
}

// TestReadsDuringVerifiedAppend holds up the append to verified.log of a
// first Open and reads meanwhile.
func TestReadsDuringVerifiedAppend(t *testing.T) {
	c := openCache(t, t.TempDir(), nil)
	if c.boot == "" {
		t.Skip("no boot id on this machine: verified.log is not kept")
	}
	k, k2 := testKey(0), testKey(1)
	mustWrite(t, c, k, 0, shardSize(0))
	mustWrite(t, c, k2, 0, shardSize(0))
	if m, err := c.Open(k, 0); err != nil {
		t.Fatal(err)
	} else {
		m.Release()
	}
	c.vmu.Lock()
	opened := make(chan error, 1)
	go func() {
		m, err := c.Open(k2, 0) // first Open: checksum, then the append
		if err == nil {
			m.Release()
		}
		opened <- err
	}()
	for testutil.ToFloat64(c.m.checksums) < 2 {
		runtime.Gosched()
		select {
		case err := <-opened:
			t.Fatalf("Open finished with verified.log's lock held: %v", err)
		default:
		}
	}
	reads(t, c, k)
	c.vmu.Unlock()
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
}
