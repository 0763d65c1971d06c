package loader

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/service"
)

// TestCloseDuringStream closes the loader while a cold stream runs: the
// stream ends with ErrUnavailable instead of hanging.
func TestCloseDuringStream(t *testing.T) {
	root := fxDataset(t, 60)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	sent := 0
	err := l.Stream(context.Background(), fxReq(func(r *service.Request) { r.BatchSize = 3 }), func(b *service.Batch) error {
		b.Release()
		if sent++; sent == 2 {
			l.Close()
		}
		return nil
	})
	if !errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("stream across Close = %v after %d batches, want ErrUnavailable", err, sent)
	}
}

// TestCloseUnregistersMetrics: a Loader's collectors leave the Registerer
// with Close, so a new Loader can register its own.
func TestCloseUnregistersMetrics(t *testing.T) {
	root := fxDataset(t, 4)
	reg := prometheus.NewRegistry()
	cache := fxCache(t, "", 0)
	l := fxLoader(t, root, cache, func(o *Options) { o.Registerer = reg })
	pipe, err := augment.ParsePipeline(fxPipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := &Options{Datasets: []DatasetSpec{{Name: "train", Path: root}}, Pipeline: pipe, Cache: cache, Registerer: reg}
	if l2, err := New(context.Background(), o); err == nil {
		l2.Close()
		t.Fatal("a second Loader registered the same metrics")
	}
	l.Close()
	l2, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	l2.Close()
}

// TestAcquireWaitsForEveryClose: a new user of an epoch waits until the
// Epoch its last user left is Released, so that it resumes the partial
// shards that close keeps. While it waited, another user may have opened
// the epoch and left it again: it waits for that close too, instead of
// opening the epoch beside it, where the shard's partial file is still
// held and its rows would be computed again in a temporary file (the
// many-node test's stream computing rows its node had prefetched).
func TestAcquireWaitsForEveryClose(t *testing.T) {
	root := fxDataset(t, 32)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	d, err := l.lookup("train")
	if err != nil {
		t.Fatal(err)
	}
	// visit opens epoch 0, writes row 0 of its first shard unless it is
	// ready (resumed), holds that row as a batch does and leaves the
	// epoch: its close keeps the shard partial once the row is released.
	visit := func() (*openEpoch, func()) {
		t.Helper()
		ep, leave, err := l.acquire(d, 0, workStream)
		if err != nil {
			t.Fatal(err)
		}
		defer leave()
		sh, p := ep.ShardOf(0)
		s, err := sh.Acquire(p, true, true)
		if err == nil && s.Claimed {
			img := l.rowScratch()
			defer l.scratch.Put(img)
			for i := range *img {
				(*img)[i] = byte(i)
			}
			if err = sh.Store(p, *img); err == nil {
				sh.Finish(p, 0, 7, nil)
				s, err = sh.Acquire(p, false, true)
			}
		}
		if err != nil || !s.Ready || s.Release == nil {
			t.Fatalf("row 0: %+v, %v; want it ready and held", s, err)
		}
		var once sync.Once
		return ep, func() { once.Do(s.Release) }
	}
	first, releaseFirst := visit()
	var releaseSecond func()
	t.Cleanup(func() {
		if releaseSecond != nil {
			releaseSecond()
		}
	})
	// The next user waits for first's close. The moment first is
	// Released, a second user opens the epoch (resuming the shard), holds
	// the row and leaves; the waiter gets the lock only after that.
	l.beforeCloseWait = func(old *openEpoch) {
		select {
		case <-old.Released():
			return // over already: no wait
		default:
		}
		if old == first {
			releaseFirst()
			_, releaseSecond = visit()
		} else {
			releaseSecond() // the waiter waits for the second close too
		}
	}
	ep, leave, err := l.acquire(d, 0, workStream)
	if err != nil {
		t.Fatal(err)
	}
	defer leave()
	sh, p := ep.ShardOf(0)
	s, err := sh.Acquire(p, true, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Claimed {
		sh.Finish(p, 0, 0, epoch.ErrAbandoned)
		t.Fatal("row 0, written and kept partial by the earlier users, is to be computed again")
	}
	if !s.Ready {
		t.Fatalf("row 0: %+v; want it ready (resumed)", s)
	}
}
