package main

import (
	"context"
	"io"
	"os"
	"runtime"

	"github.com/loaderd/loaderd/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o bench.Options
	var clients string
	fs := newFlags("bench", "[--data DIR] [--peer torchvision] [flags]")
	fs.StringVar(&o.Data, "data", "", "ImageFolder `DIRECTORY` to measure on (default: generated images)")
	fs.StringVar(&o.Pipeline, "pipeline", defaultPipeline, "augmentation `PIPELINE` (`loaderd pipelines` lists the ops)")
	fs.StringVar(&o.Decoder, "decoder", "auto", "JPEG `DECODER`: auto (libjpeg-turbo when built in, else go), libjpeg-turbo, go")
	fs.IntVar(&o.MaxWorkers, "max-workers", runtime.GOMAXPROCS(0), "measure the cold pipeline at 1..N workers")
	fs.IntVar(&o.Repeat, "repeat", 3, "repeats of each measurement (median reported)")
	fs.IntVar(&o.Epochs, "epochs", 4, "epochs of the fused precompute measurement")
	fs.StringVar(&clients, "clients", "1,2,4", "concurrent Flight clients of the warm measurement")
	fs.StringVar(&o.Peer, "peer", "", "peer to run side by side: torchvision (empty = none)")
	fs.StringVar(&o.PeerScript, "peer-script", "", "`PATH` of torchvision_baseline.py (default: ../shared/peers/...)")
	fs.IntVar(&o.MaxImages, "max-images", 0, "images per measurement (0 = the harness default)")
	fs.StringVar(&o.OutDir, "out", "bench-out", "`DIRECTORY` for bench.json and bench.png")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	cl, err := parseEpochs(clients) // same syntax: "1,2,4" or "1-4"
	if err != nil || len(cl) == 0 || cl[0] < 1 {
		return usagef("--clients %q: want a list like 1,2,4", clients)
	}
	o.Clients = cl
	if o.Peer != "" && o.Peer != "torchvision" {
		return usagef("--peer %q: want torchvision (the one peer known)", o.Peer)
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"max-workers", o.MaxWorkers}, {"repeat", o.Repeat}, {"epochs", o.Epochs}} {
		if v.n < 1 {
			return usagef("--%s %d: want 1 or more", v.name, v.n)
		}
	}
	if _, err := parsePipeline(o.Pipeline, o.Decoder); err != nil {
		return err
	}
	o.Logger = newLogger(stderr, "warn")
	o.Progress = stderr
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return err
	}
	rep, err := bench.Run(ctx, &o)
	if err != nil {
		return err
	}
	return rep.WriteTable(stdout) // Run wrote bench.json and bench.png into OutDir
}
