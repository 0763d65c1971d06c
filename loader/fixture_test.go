package loader

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// fxPipeline is a small random pipeline: 8×8 crops keep tests fast.
const fxPipeline = "random_resized_crop(size=8,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)"

// fxDataset writes an ImageFolder of n small images in three classes
// (PNG, and a JPEG every fifth) under a temporary directory.
func fxDataset(t testing.TB, n int) string {
	t.Helper()
	return fxDatasetSized(t, n, 20)
}

// fxDatasetSized is fxDataset with images side..2*side pixels wide.
func fxDatasetSized(t testing.TB, n, side int) string {
	t.Helper()
	root := t.TempDir()
	for i := range n {
		class := fmt.Sprintf("c%d", i%3)
		if err := os.MkdirAll(filepath.Join(root, class), 0o755); err != nil {
			t.Fatal(err)
		}
		name := filepath.Join(root, class, fmt.Sprintf("img%04d.png", i))
		b := fxImage(i, side)
		if i%5 == 4 {
			name = filepath.Join(root, class, fmt.Sprintf("img%04d.jpg", i))
			b = fxJPEG(i, side)
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// fxPicture is image i: a gradient with noise, side..2*side px wide.
func fxPicture(i, side int) image.Image {
	r := rand.New(rand.NewPCG(uint64(i), 7))
	w, h := side+r.IntN(side+4), side*4/5+r.IntN(side)
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x*9 + i), uint8(y*11 + r.IntN(16)), uint8(i*37 + r.IntN(64)), 255})
		}
	}
	return img
}

func fxImage(i, side int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, fxPicture(i, side)); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func fxJPEG(i, side int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, fxPicture(i, side), &jpeg.Options{Quality: 90}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// fxCache opens a cache in dir (a new temporary one when dir is "").
func fxCache(t testing.TB, dir string, budget int64) *shardcache.Cache {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	c, err := shardcache.Open(dir, &shardcache.Options{Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// fxLoader serves root as dataset "train" from cache c.
func fxLoader(t testing.TB, root string, c *shardcache.Cache, mod func(*Options)) *Loader {
	t.Helper()
	pipe, err := augment.ParsePipeline(fxPipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := &Options{
		Datasets:  []DatasetSpec{{Name: "train", Path: root}},
		Pipeline:  pipe,
		Seed:      42,
		Cache:     c,
		Workers:   2,
		ShardSize: 16,
	}
	if mod != nil {
		mod(o)
	}
	l, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// fxRows is what a stream sent: rows in order, and batch sizes.
type fxRows struct {
	Index   []uint64
	Label   []int64
	Images  [][]byte
	Batches []int
}

// fxCollect streams req, copying every row and releasing each batch.
func fxCollect(ctx context.Context, l *Loader, req service.Request) (fxRows, error) {
	var got fxRows
	err := l.Stream(ctx, req, func(b *service.Batch) error {
		got.Batches = append(got.Batches, b.Rows())
		got.Index = append(got.Index, b.Index...)
		got.Label = append(got.Label, b.Label...)
		for _, img := range b.Images {
			got.Images = append(got.Images, bytes.Clone(img))
		}
		if b.Release != nil {
			b.Release()
		}
		return nil
	})
	return got, err
}

// fxReq is a request for dataset "train" with defaults filled in.
func fxReq(mod func(*service.Request)) service.Request {
	r := service.Request{Dataset: "train", BatchSize: 7, WorldSize: 1, Shuffle: true}
	if mod != nil {
		mod(&r)
	}
	return r
}

// fxEpoch returns the rows of epoch e by sample index, computed by a
// fresh loader on a fresh cache, one worker.
func fxEpoch(t testing.TB, root string, e int, mod func(*Options)) map[uint64][]byte {
	t.Helper()
	l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) {
		o.Workers = 1
		if mod != nil {
			mod(o)
		}
	})
	got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Epoch = e; r.BatchSize = 1000; r.Shuffle = false }))
	if err != nil {
		t.Fatal(err)
	}
	return fxByIndex(t, got)
}

// fxByIndex maps rows by index, failing on a repeated index with
// different bytes.
func fxByIndex(t testing.TB, got fxRows) map[uint64][]byte {
	t.Helper()
	m := map[uint64][]byte{}
	for r, i := range got.Index {
		if prev, ok := m[i]; ok && !bytes.Equal(prev, got.Images[r]) {
			t.Fatalf("sample %d sent twice with different bytes", i)
		}
		m[i] = got.Images[r]
	}
	return m
}

// fxSame fails unless every row of got equals want's row of its index.
func fxSame(t testing.TB, what string, want map[uint64][]byte, got fxRows) {
	t.Helper()
	if len(got.Index) == 0 {
		t.Fatalf("%s: no rows", what)
	}
	for r, i := range got.Index {
		w, ok := want[i]
		if !ok {
			t.Fatalf("%s: row %d has unexpected index %d", what, r, i)
		}
		if !bytes.Equal(w, got.Images[r]) {
			t.Fatalf("%s: row %d (sample %d) differs from the fresh computation", what, r, i)
		}
	}
}

// fxComputed returns loaderd_rows_computed_total{kind}.
func fxComputed(l *Loader, kind work) int {
	return int(testutil.ToFloat64(l.met.computed.WithLabelValues(kind.String())))
}

// testutilServed returns loaderd_rows_served_from_cache_total.
func testutilServed(l *Loader) int { return int(testutil.ToFloat64(l.met.served)) }

// testutilChanges returns loaderd_dataset_changes_total.
func testutilChanges(l *Loader) float64 { return testutil.ToFloat64(l.met.datasetChanges) }

// testutilUndecodable returns loaderd_undecodable_samples_total.
func testutilUndecodable(l *Loader) float64 { return testutil.ToFloat64(l.met.undecodable) }

// fxCorruptShard1 precomputes epoch 0 of root into the cache at dir, closes
// it, and flips a byte in the middle of shard 1's file, as a disk might.
func fxCorruptShard1(t *testing.T, root, dir string) {
	t.Helper()
	c := fxCache(t, dir, 0)
	l := fxLoader(t, root, c, nil)
	if _, err := l.Precompute(context.Background(), "train", []int{0}, nil); err != nil {
		t.Fatal(err)
	}
	l.Close()
	c.Close()
	shards, _ := filepath.Glob(filepath.Join(dir, "*", "shard-000001.*.arrow"))
	if len(shards) != 1 {
		t.Fatalf("shard files %v, want one shard 1", shards)
	}
	b, err := os.ReadFile(shards[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(shards[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
}
