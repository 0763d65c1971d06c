package shardcache

import (
	"fmt"
	"sync"
	"testing"
)

// A benchmark shard: 64 rows of one 224×224×3 uint8 sample.
const (
	benchRows    = 64
	benchRowSize = 224 * 224 * 3
	benchSize    = benchRows * benchRowSize
)

// BenchmarkWriteShard measures Create, filling the mapping and Commit
// (msync, fsync, CRC-32C, rename, directory fsync), with one writer and
// with two writing different shards at once.
func BenchmarkWriteShard(b *testing.B) {
	for _, writers := range []int{1, 2} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			c, err := Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			k := testKey(0)
			row := pattern(k, 0, benchRowSize)
			b.SetBytes(int64(writers) * benchSize)
			n := 0
			for b.Loop() {
				var wg sync.WaitGroup
				for i := range writers {
					wg.Go(func() {
						w, err := c.Create(k, (n*writers+i)%8, benchSize, prepareSkeleton)
						if err != nil {
							b.Error(err)
							return
						}
						for r := range benchRows {
							copy(w.Data()[r*benchRowSize:], row)
						}
						if err := w.Commit(); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
				n++
			}
			b.ReportMetric(float64(n*writers*benchRows)/b.Elapsed().Seconds(), "images/s")
		})
	}
}

// BenchmarkOpen measures Open+Release of a shard: verified ("warm", the
// checksum already checked in this process) and first ("cold", checksum
// over the page-cached file).
func BenchmarkOpen(b *testing.B) {
	for _, bc := range []struct {
		name   string
		verify bool
	}{
		{name: "warm", verify: false},
		{name: "first", verify: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			k := testKey(0)
			if err := writeShard(c, k, 0, benchSize); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(benchSize)
			n := 0
			for b.Loop() {
				if bc.verify {
					c.mu.Lock()
					clear(c.verified)
					c.mu.Unlock()
				}
				m, err := c.Open(k, 0)
				if err != nil {
					b.Fatal(err)
				}
				m.Release()
				n++
			}
			b.ReportMetric(float64(n*benchRows)/b.Elapsed().Seconds(), "images/s")
		})
	}
}
