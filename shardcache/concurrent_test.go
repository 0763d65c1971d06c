package shardcache

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestConcurrent runs writers, readers, pins and evictions of a few epochs
// at once under a budget that forces eviction; run it with -race.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	const (
		size       = 8192
		epochs     = 4
		shards     = 6
		goroutines = 8
		iters      = 200
	)
	c := openCache(t, dir, &Options{Budget: 10 * size})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			for range iters {
				k, s := testKey(r.IntN(epochs)), r.IntN(shards)
				switch op := r.IntN(12); {
				case op < 4:
					if err := writeShard(c, k, s, size); err != nil && !errors.Is(err, ErrBudget) {
						t.Errorf("write shard %d of epoch %d: %v", s, k.Epoch, err)
					}
				case op < 5: // a writer that gives up
					if w, err := c.Create(k, s, size, prepareSkeleton); err == nil {
						w.Data()[size-1] = 1
						w.Abort()
					}
				case op < 9:
					if err := checkShard(c, k, s, size); err != nil && !errors.Is(err, ErrMiss) {
						t.Errorf("read shard %d of epoch %d: %v", s, k.Epoch, err)
					}
				case op < 11: // a stream: pin, read or produce, unpin
					unpin := c.Pin(k)
					if err := checkShard(c, k, s, size); errors.Is(err, ErrMiss) {
						err = writeShard(c, k, s, size)
						if err != nil && !errors.Is(err, ErrBudget) {
							t.Errorf("write pinned shard %d of epoch %d: %v", s, k.Epoch, err)
						}
					} else if err != nil {
						t.Errorf("read pinned shard %d of epoch %d: %v", s, k.Epoch, err)
					}
					unpin()
				default:
					if _, err := c.Evict(k); err != nil {
						t.Errorf("Evict: %v", err)
					}
					_ = c.Epochs()
					if u := c.Usage(); u > c.Budget() {
						t.Errorf("Usage %d over budget %d", u, c.Budget())
					}
				}
			}
		})
	}
	wg.Wait()

	var sum int64
	files := 0
	for _, e := range c.Epochs() {
		if e.Pinned || e.Evicting {
			t.Errorf("epoch %d still pinned or evicting: %+v", e.Key.Epoch, e)
		}
		sum += e.Bytes
		files += e.Shards
		for _, s := range c.Shards(e.Key) {
			if err := checkShard(c, e.Key, s, size); err != nil {
				t.Errorf("final check of shard %d of epoch %d: %v", s, e.Key.Epoch, err)
			}
		}
	}
	if u := c.Usage(); u != sum || u > c.Budget() {
		t.Errorf("Usage = %d, epochs hold %d, budget %d", u, sum, c.Budget())
	}
	if got := filesUnder(t, dir, shardSuffix); len(got) != files {
		t.Errorf("%d shard files on disk, cache lists %d: %v", len(got), files, got)
	}
	if got := filesUnder(t, dir, tmpSuffix); len(got) != 0 {
		t.Errorf("temporary files left: %v", got)
	}
	if got := filesUnder(t, dir, trashPrefix); len(got) != 0 {
		t.Errorf("trash left: %v", got)
	}
}
