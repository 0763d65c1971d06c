package shardcache

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkReadUnderCreate measures the latency of the reads a stream
// makes (Has, and Open+Release of a verified shard) while another
// goroutine keeps the cache busy writing: each round Creates a shard of a
// new epoch (its directory and meta.json: three fsyncs), commits it (msync,
// fsync, rename, directory fsync), opens it once (checksum, verified.log
// append) and evicts the epoch (rename aside, removal). A read that waits
// for that I/O shows in the tail: the metrics are the median, p99, p99.9,
// p99.99 and worst latency of one read, in nanoseconds; the reads that
// took a millisecond or more (stalls) per second and the time they took
// per second of the run; and the writer's rounds per second. On a busy
// machine the scheduler stalls reads too: compare runs side by side.
func BenchmarkReadUnderCreate(b *testing.B) {
	for _, op := range []string{"has", "open"} {
		b.Run(op, func(b *testing.B) {
			c, err := Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			k := testKey(0)
			if err := writeShard(c, k, 0, 64<<10); err != nil {
				b.Fatal(err)
			}
			if m, err := c.Open(k, 0); err != nil { // verified from now on
				b.Fatal(err)
			} else {
				m.Release()
			}
			var stop atomic.Bool
			var rounds atomic.Int64
			var wg sync.WaitGroup
			wg.Go(func() {
				for e := 1; !stop.Load(); e++ {
					ke := testKey(e)
					if err := writeShard(c, ke, 0, 64<<10); err != nil {
						b.Error(err)
						return
					}
					if m, err := c.Open(ke, 0); err != nil {
						b.Error(err)
						return
					} else {
						m.Release()
					}
					if _, err := c.Evict(ke); err != nil {
						b.Error(err)
						return
					}
					rounds.Add(1)
				}
			})
			var h latencies
			for b.Loop() {
				t0 := time.Now()
				if op == "has" {
					if !c.Has(k, 0) {
						b.Fatal("Has = false")
					}
				} else {
					m, err := c.Open(k, 0)
					if err != nil {
						b.Fatal(err)
					}
					m.Release()
				}
				h.add(time.Since(t0))
			}
			stop.Store(true)
			wg.Wait()
			b.ReportMetric(h.quantile(0.5), "p50-ns")
			b.ReportMetric(h.quantile(0.99), "p99-ns")
			b.ReportMetric(h.quantile(0.999), "p99.9-ns")
			b.ReportMetric(h.quantile(0.9999), "p99.99-ns")
			b.ReportMetric(float64(h.max), "max-ns")
			b.ReportMetric(float64(h.stalls)/b.Elapsed().Seconds(), "stalls/s")
			b.ReportMetric(float64(h.stalled.Microseconds())/b.Elapsed().Seconds(), "stalled-µs/s")
			b.ReportMetric(float64(rounds.Load())/b.Elapsed().Seconds(), "writes/s")
		})
	}
}

// latencies is a histogram of durations in buckets 5% apart, so that a
// benchmark of millions of reads keeps constant memory.
type latencies struct {
	counts  [600]int64
	n       int64
	max     time.Duration
	stalls  int64         // reads of stallTime or more
	stalled time.Duration // their total time
}

const stallTime = time.Millisecond

const latencyGrowth = 1.05

func (h *latencies) add(d time.Duration) {
	i := 0
	if d > 1 {
		i = min(int(math.Log(float64(d))/math.Log(latencyGrowth)), len(h.counts)-1)
	}
	h.counts[i]++
	h.n++
	h.max = max(h.max, d)
	if d >= stallTime {
		h.stalls++
		h.stalled += d
	}
}

// quantile returns the upper bound of the bucket holding quantile q, in ns.
func (h *latencies) quantile(q float64) float64 {
	want := int64(math.Ceil(q * float64(h.n)))
	var seen int64
	for i, c := range h.counts {
		if seen += c; seen >= want && c > 0 {
			return math.Pow(latencyGrowth, float64(i+1))
		}
	}
	return float64(h.max)
}
