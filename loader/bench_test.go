package loader

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/service"
)

// benchLoader serves LOADERD_BENCH_DATA (an ImageFolder, e.g.
// /data/photoset), else 96 generated images, through imagenet-train with
// every core and a fresh cache.
func benchLoader(b *testing.B) (*Loader, int) {
	b.Helper()
	root := os.Getenv("LOADERD_BENCH_DATA")
	if root == "" {
		root = fxDatasetSized(b, 96, 300)
	}
	pipe, err := augment.ParsePipeline("imagenet-train", nil)
	if err != nil {
		b.Fatal(err)
	}
	l := fxLoader(b, root, fxCache(b, "", 0), func(o *Options) {
		o.Pipeline, o.Workers, o.ShardSize, o.InFlightBatches = pipe, 0, 256, 4
	})
	d, _ := l.Dataset("train")
	return l, d.Len()
}

// benchStream streams epoch e in batches of 64 and counts the rows.
func benchStream(b *testing.B, l *Loader, e int) int {
	rows := 0
	err := l.Stream(context.Background(), fxReq(func(r *service.Request) { r.Epoch, r.BatchSize = e, 64 }), func(bt *service.Batch) error {
		rows += bt.Rows()
		bt.Release()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return rows
}

// BenchmarkStream compares a stream computing its epoch with one served
// from the cache.
func BenchmarkStream(b *testing.B) {
	b.Run("cold", func(b *testing.B) {
		l, _ := benchLoader(b)
		rows, e := 0, 0
		cpu0 := cpuTime()
		for b.Loop() {
			rows += benchStream(b, l, e)
			if _, err := l.Evict(context.Background(), "train", []int{e}); err != nil {
				b.Fatal(err)
			}
			e++
		}
		report(b, int64(rows), cpu0)
	})
	b.Run("cached", func(b *testing.B) {
		l, _ := benchLoader(b)
		if _, err := l.Precompute(context.Background(), "train", []int{0}, nil); err != nil {
			b.Fatal(err)
		}
		rows := 0
		cpu0 := cpuTime()
		for b.Loop() {
			rows += benchStream(b, l, 0)
		}
		report(b, int64(rows), cpu0)
	})
}

// BenchmarkPrecompute compares precomputing one epoch with four fused
// epochs (one decode per image for all four); images/s counts augmented
// samples written.
func BenchmarkPrecompute(b *testing.B) {
	for _, tc := range []struct {
		name   string
		epochs int
	}{
		{name: "1epoch", epochs: 1},
		{name: "4epochs-fused", epochs: 4},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l, _ := benchLoader(b)
			var rows int64
			first := 0
			cpu0 := cpuTime()
			for b.Loop() {
				es := make([]int, tc.epochs)
				for k := range es {
					es[k] = first + k
				}
				sum, err := l.Precompute(context.Background(), "train", es, nil)
				if err != nil {
					b.Fatal(err)
				}
				rows += sum.Computed
				if _, err := l.Evict(context.Background(), "train", es); err != nil {
					b.Fatal(err)
				}
				first += tc.epochs
			}
			report(b, rows, cpu0)
		})
	}
}

// cpuTime is the CPU time this process has used: on a shared machine,
// images per CPU-second says more than images per second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// report sets the images/s and images/cpu-s metrics.
func report(b *testing.B, rows int64, cpu0 time.Duration) {
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "images/s")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(rows)/cpu.Seconds(), "images/cpu-s")
	}
}
