package epoch_test

import (
	"fmt"
	"os"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/shardcache"
)

// A shard goes from absent to committed: each row is claimed, computed by
// the claimer and finished; the last one sends the shard to a commit.
func Example() {
	dir, _ := os.MkdirTemp("", "epoch-example")
	defer os.RemoveAll(dir)
	cache, _ := shardcache.Open(dir, nil)
	defer cache.Close()
	schema, _ := arrowio.NewSchema(arrowio.ImageSpec(1, 1, false), nil)
	commits := epoch.NewCommits()
	ep, err := epoch.New(&epoch.Options{
		Cache: cache, Commits: commits, Schema: schema,
		Key:     shardcache.Key{Dataset: "example", Pipeline: "p", Epoch: 0},
		Samples: 4, ShardSize: 2,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for i := range 4 {
		sh, p := ep.ShardOf(i)
		if claimed, _ := sh.Request(p, false); claimed {
			_ = sh.Store(p, []byte{byte(i), 0, 0}) // a worker renders sample i
			sh.Finish(p, uint64(i), int64(i%2), nil)
		}
	}
	commits.Wait()
	ep.Close()
	fmt.Println("committed shards:", cache.Shards(ep.Key()))
	// Output:
	// committed shards: [0 1]
}
