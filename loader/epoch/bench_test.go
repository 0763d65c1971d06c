package epoch_test

import (
	"bytes"
	"testing"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/shardcache"
)

// BenchmarkCloseResumed times Epoch.Close of an epoch whose partial shard
// (1024 rows of 64×64 RGB, 256 of them ready) was resumed from its
// journal: with nothing new since (a stream served rows from it), and with
// one row written since. Only Close is timed; the open, the resume (rows
// checked) and the row written are not.
func BenchmarkCloseResumed(b *testing.B) {
	const rows, ready = 1024, 256
	schema, err := arrowio.NewSchema(arrowio.ImageSpec(64, 64, false), nil)
	if err != nil {
		b.Fatal(err)
	}
	lay, err := arrowio.NewShardLayout(schema, rows)
	if err != nil {
		b.Fatal(err)
	}
	img := func(p int) []byte { return bytes.Repeat([]byte{byte(p)}, lay.RowBytes) }
	for _, tc := range []struct {
		name string
		add  int // rows written after the resume
	}{{"nothing-new", 0}, {"one-row-new", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			cache, err := shardcache.Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer cache.Close()
			key := shardcache.Key{Dataset: "d", Pipeline: "p", Seed: 1, Epoch: 3}
			open := func() *epoch.Epoch {
				ep, err := epoch.New(&epoch.Options{Cache: cache, Commits: epoch.NewCommits(), Schema: schema, Key: key, Samples: rows, ShardSize: rows})
				if err != nil {
					b.Fatal(err)
				}
				return ep
			}
			write := func(sh *epoch.Shard, p int) {
				if claimed, err := sh.Request(p, false); !claimed || err != nil {
					b.Fatalf("Request(%d) = %v, %v", p, claimed, err)
				}
				if err := sh.Store(p, img(p)); err != nil {
					b.Fatal(err)
				}
				sh.Finish(p, uint64(p), int64(p), nil)
			}
			next := rows // the next row to write; rows: start again
			for b.Loop() {
				b.StopTimer()
				if next+tc.add >= rows {
					if _, err := cache.Evict(key); err != nil {
						b.Fatal(err)
					}
					ep := open()
					for p := range ready {
						write(ep.Shards()[0], p)
					}
					ep.Close()
					next = ready
				}
				ep := open()
				sh := ep.Shards()[0]
				sh.Request(0, false) // resumes the shard: row 0 is ready
				s, err := sh.Acquire(0, false, true)
				if err != nil || !s.Ready {
					b.Fatalf("row 0: %+v, %v; want it resumed", s, err)
				}
				s.Release()
				for range tc.add {
					write(sh, next)
					next++
				}
				b.StartTimer()
				ep.Close()
			}
		})
	}
}
