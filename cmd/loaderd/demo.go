package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/bench"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	f.register(pflag.NewFlagSet("defaults", pflag.ContinueOnError)) // serve's defaults, then demo's own
	var dir string
	var n int
	var keep bool
	fs := newFlags("demo", "[--keep-serving] [flags]")
	fs.StringVar(&dir, "dir", filepath.Join(os.TempDir(), "loaderd-demo"), "`DIRECTORY` for the generated sample dataset and its cache")
	fs.IntVar(&n, "images", 512, "images in the generated sample dataset")
	fs.StringVar(&f.listen, "listen", defaultListen, "Flight address `HOST:PORT` to listen on")
	fs.BoolVar(&keep, "keep-serving", false, "keep serving after the demo fetches, until Ctrl-C (for the Python example)")
	fs.StringVar(&f.pipeline, "pipeline", defaultPipeline, "augmentation `PIPELINE` (`loaderd pipelines` lists the ops)")
	fs.IntVar(&f.workers, "workers", 0, "decode/augment workers (0 = one per CPU)")
	fs.notes = `Generates --images JPEGs in DIR/data (once; again, with DIR/cache emptied, when --images changes), serves them as dataset "sample"
with the cache in DIR/cache, and streams epoch 0 (computed while it streams),
epoch 0 again (from the cache) and epoch 1 (prefetched in the background).`
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if n < 1 || n > 100000 {
		return usagef("--images %d: want 1..100000", n)
	}
	if err := checkAddr("listen", f.listen); err != nil {
		return err
	}
	data, cacheDir := filepath.Join(dir, "data"), filepath.Join(dir, "cache")
	// Another demo on dir would have its data and cache changed under it.
	if c, err := shardcache.Open(cacheDir, nil); errors.Is(err, shardcache.ErrLocked) {
		return fmt.Errorf("--dir %s is in use by another loaderd demo: stop it, or give this one another --dir", dir)
	} else if err != nil {
		return err
	} else {
		c.Close()
	}
	// The port before the images: a second demo on a busy --listen fails
	// at once, not after generating its dataset.
	lis, err := listen("listen", f.listen, -1)
	if err != nil {
		return err
	}
	f.preopened = lis
	defer lis.Close() // serve closes it too; this is for the returns before it
	switch have := demoImages(data); {
	case have == n:
	case have > 0:
		fmt.Fprintf(stdout, "%s holds %d sample images, not --images %d: generating them again, and emptying the demo's cache %s ...\n", data, have, n, cacheDir)
		if err := os.RemoveAll(cacheDir); err != nil {
			return err
		}
		fallthrough
	default:
		if have == 0 {
			fmt.Fprintf(stdout, "generating %d sample images in %s ...\n", n, data)
		}
		if err := generateDemo(data, n); err != nil {
			return err
		}
	}
	f.data = datasetFlag{{Name: "sample", Path: data}}
	f.cacheDir, f.shardSize, f.logLevel = cacheDir, 256, "warn"
	f.cacheDirFlag, f.cacheDirArg = "--dir", dir
	f.drainTimeout = 5 * time.Second
	logger := newLogger(stderr, f.logLevel)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan string, 1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(gctx, &f, logger, ready) })
	g.Go(func() error {
		var addr string
		select {
		case addr = <-ready:
		case <-gctx.Done():
			return nil
		}
		fmt.Fprintf(stdout, "loaderd serving dataset %q at grpc://%s\n", "sample", addr)
		ff := fetchFlags{connFlags: connFlags{addr: addr}, clients: 1, req: service.Request{Dataset: "sample", BatchSize: 64, WorldSize: 1, Shuffle: true}}
		for _, step := range []struct {
			what  string
			epoch int
		}{
			{"epoch 0, computed while streaming (or cached by an earlier run)", 0},
			{"epoch 0 again, from the cache", 0},
			{"epoch 1, precomputed in the background meanwhile", 1},
		} {
			ff.req.Epoch = step.epoch
			res, err := fetch(gctx, &ff, &flightsvc.ClientOptions{})
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "  %-62s %12s  %7.0f images/s  %6.0f MB/s  first batch %.1f ms\n",
				step.what, count(res.Images, "image", "images"), res.ImagesPerSec, res.MBPerSec, res.FirstBatchMs)
		}
		if keep {
			fmt.Fprintf(stdout, "serving until Ctrl-C; try it with the Python of a venv that has the loaderd package and torch\n"+
				"(on a GPU machine python3 -m venv venv && venv/bin/pip install './python[torch]';\n"+
				" CPU-only machines and a distribution's torch: README, A trainer's side):\n"+
				"  venv/bin/python examples/train.py --addr %s --dataset sample\n", addr)
			<-gctx.Done()
			return nil
		}
		cancel()
		return nil
	})
	return g.Wait()
}

// demoComplete, in the demo's data directory, says that every image was
// written; it holds their number.
const demoComplete = ".complete"

// demoImages returns the number of images of a complete demo dataset in
// data, 0 when there is none (or only a part of one).
func demoImages(data string) int {
	b, err := os.ReadFile(filepath.Join(data, demoComplete))
	if err != nil {
		return 0
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		return n
	}
	// Written empty by an older loaderd: count the images.
	n := 0
	filepath.WalkDir(data, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			n++
		}
		return nil
	})
	return n
}

// generateDemo writes n generated images into data, replacing what it
// held, and then demoComplete.
func generateDemo(data string, n int) error {
	if err := os.RemoveAll(data); err != nil {
		return err
	}
	if err := bench.GenerateDataset(data, n, min(n, 8), 1); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(data, demoComplete), []byte(strconv.Itoa(n)+"\n"), 0o644)
}
