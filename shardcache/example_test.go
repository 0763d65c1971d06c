package shardcache_test

import (
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/loaderd/loaderd/shardcache"
)

func Example() {
	dir, err := os.MkdirTemp("", "shardcache-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	c, err := shardcache.Open(dir, &shardcache.Options{Budget: 1 << 30})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	k := shardcache.Key{Dataset: "3f2a9c", Pipeline: "9c1d07", Seed: 42, Epoch: 0}

	// Write shard 0: the caller writes a skeleton, workers fill the mapping.
	w, err := c.Create(k, 0, 12, func(f *os.File) error {
		_, err := f.WriteString("ARROW1")
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Abort() // no-op once committed
	copy(w.Data()[6:], "rows..")
	if err := w.Commit(); err != nil {
		log.Fatal(err)
	}

	m, err := c.Open(k, 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", m.Data())
	m.Release()

	_, err = c.Open(k, 1)
	fmt.Println(errors.Is(err, shardcache.ErrMiss))
	fmt.Println(c.Shards(k), c.Usage())

	unpin := c.Pin(k) // a live stream needs the epoch
	_, _ = c.Evict(k)
	e := c.Epochs()[0]
	fmt.Println(e.Shards, e.Pinned, e.Evicting)
	unpin()
	fmt.Println(len(c.Epochs()), c.Usage())
	// Output:
	// ARROW1rows..
	// true
	// [0] 12
	// 1 true true
	// 0 0
}
