package bench

import (
	"context"
	"os"
	"runtime"
	"testing"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/loader"
)

// benchFiles reads up to 200 images of $LOADERD_BENCH_DATA (an
// ImageFolder), or of 32 generated images when it is unset.
func benchFiles(b *testing.B) [][]byte {
	b.Helper()
	dir := os.Getenv("LOADERD_BENCH_DATA")
	if dir == "" {
		dir = b.TempDir()
		if err := GenerateDataset(dir, 32, 4, 1); err != nil {
			b.Fatal(err)
		}
	}
	ds, err := loader.OpenDataset("bench", dir)
	if err != nil {
		b.Fatal(err)
	}
	files := make([][]byte, min(ds.Len(), 200))
	for i := range files {
		if files[i], err = ds.ReadFile(i * ds.Len() / len(files)); err != nil {
			b.Fatal(err)
		}
	}
	return files
}

// BenchmarkCold is the cold phase at GOMAXPROCS workers: imagenet-train
// over files in memory.
func BenchmarkCold(b *testing.B) {
	files := benchFiles(b)
	p, err := augment.ParsePipeline("imagenet-train", nil)
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	epoch := 0
	for b.Loop() {
		done, _, err := coldRun(context.Background(), p, files, runtime.GOMAXPROCS(0), 1, epoch)
		if err != nil {
			b.Fatal(err)
		}
		n += done
		epoch++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "images/s")
}

// BenchmarkLoopback is the loopback TCP limit with one stream.
func BenchmarkLoopback(b *testing.B) {
	const size = 64 << 20
	var n int64
	for b.Loop() {
		if _, err := loopbackOnce(context.Background(), 1, size); err != nil {
			b.Fatal(err)
		}
		n += size
	}
	b.ReportMetric(float64(n)/1e9/b.Elapsed().Seconds(), "GB/s")
}
