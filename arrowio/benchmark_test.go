package arrowio_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/loaderd/loaderd/arrowio"
)

// BenchmarkBatchMessage encodes a batch of 256 ImageNet-size rows.
func BenchmarkBatchMessage(b *testing.B) {
	spec := arrowio.ImageSpec(224, 224, false)
	schema := testSchema(b, spec)
	const rows = 256
	pixels := make([]byte, rows*spec.RowBytes())
	batch := &testRows{Index: make([]uint64, rows), Label: make([]int64, rows)}
	for p := range rows {
		batch.Images = append(batch.Images, pixels[p*spec.RowBytes():(p+1)*spec.RowBytes()])
	}
	if _, err := batchMessage(schema, batch); err != nil {
		b.Fatal(err)
	}
	n := 0
	for b.Loop() {
		if _, err := batchMessage(schema, batch); err != nil {
			b.Fatal(err)
		}
		n += rows
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "images/s")
}

// BenchmarkNewShardLayout lays out a 1024-row ImageNet-size shard (uncached).
func BenchmarkNewShardLayout(b *testing.B) {
	schema := testSchema(b, arrowio.ImageSpec(224, 224, false))
	for b.Loop() {
		if _, err := arrowio.NewShardLayoutUncached(schema, 1024); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteSkeleton writes the sparse skeleton of a 1024-row shard
// (154 MB of pixels).
func BenchmarkWriteSkeleton(b *testing.B) {
	schema := testSchema(b, arrowio.ImageSpec(224, 224, false))
	l, err := arrowio.NewShardLayout(schema, 1024)
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(b.TempDir(), "shard"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	for b.Loop() {
		if err := l.WriteSkeleton(f); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenShard validates a 1024-row shard.
func BenchmarkOpenShard(b *testing.B) {
	schema := testSchema(b, arrowio.ImageSpec(224, 224, false))
	l, err := arrowio.NewShardLayout(schema, 1024)
	if err != nil {
		b.Fatal(err)
	}
	data := l.Skeleton()
	for b.Loop() {
		if _, err := arrowio.OpenShard(data, schema, 1024); err != nil {
			b.Fatal(err)
		}
	}
}
