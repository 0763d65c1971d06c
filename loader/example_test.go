package loader_test

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"log"
	"os"
	"path/filepath"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/loader"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// writeToy writes an ImageFolder of six 12×10 PNGs in two classes.
func writeToy(root string) error {
	for i := range 6 {
		dir := filepath.Join(root, []string{"cat", "dog"}[i%2])
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		img := image.NewGray(image.Rect(0, 0, 12, 10))
		for p := range img.Pix {
			img.Pix[p] = uint8(p * (i + 1))
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%d.png", i)))
		if err != nil {
			return err
		}
		err = png.Encode(f, img)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func Example() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "loader-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if err := writeToy(filepath.Join(tmp, "data")); err != nil {
		log.Fatal(err)
	}

	pipe, err := augment.ParsePipeline("resize(size=8)|center_crop(size=8)", nil)
	if err != nil {
		log.Fatal(err)
	}
	cache, err := shardcache.Open(filepath.Join(tmp, "cache"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	l, err := loader.New(ctx, &loader.Options{
		Datasets: []loader.DatasetSpec{{Name: "toy", Path: filepath.Join(tmp, "data")}},
		Pipeline: pipe,
		Seed:     1,
		Cache:    cache,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	sum, err := l.Precompute(ctx, "toy", []int{0, 1}, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("computed", sum.Computed, "cached", sum.Cached)

	req := service.Request{Dataset: "toy", Epoch: 1, BatchSize: 4, WorldSize: 1}
	err = l.Stream(ctx, req, func(b *service.Batch) error {
		defer b.Release()
		fmt.Println("index", b.Index, "label", b.Label, "row bytes", len(b.Images[0]))
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// computed 12 cached 0
	// index [0 1 2 3] label [0 0 0 1] row bytes 192
	// index [4 5] label [1 1] row bytes 192
}
