package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/service"
)

func runCacheStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c connFlags
	var dataset string
	var asJSON bool
	fs := newFlags("cache-status", "[--dataset NAME] [--addr HOST:PORT] [flags]")
	fs.StringVar(&dataset, "dataset", "", "only dataset `NAME` (default: every dataset the server serves)")
	fs.BoolVar(&asJSON, "json", false, "print the cache-status action's JSON")
	c.register(fs.FlagSet)
	fs.notes = `Asks a running server (the cache-status action) which epochs of its datasets
the cache holds, and which epochs of the same datasets it holds under another
pipeline or seed: those the server never reads.`
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	copts, err := c.options()
	if err != nil {
		return err
	}
	cl, err := flightsvc.Dial(ctx, c.addr, copts)
	if err != nil {
		return usagef("--addr %q: %v", c.addr, err)
	}
	defer cl.Close()
	var body []byte
	if dataset != "" {
		body, _ = json.Marshal(map[string]string{"dataset": dataset})
	}
	res, err := cl.Action(ctx, "cache-status", body)
	if err != nil {
		return serverError(c.addr, err, c.served(ctx, copts, err))
	}
	if len(res) != 1 {
		return fmt.Errorf("the server at %s answered cache-status with %d results, want 1", c.addr, len(res))
	}
	if asJSON {
		_, err := stdout.Write(append(res[0], '\n'))
		return err
	}
	var st service.CacheStatus
	if err := json.Unmarshal(res[0], &st); err != nil {
		return fmt.Errorf("the server at %s: cache-status: %w", c.addr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DATASET\tEPOCH\tSTATE\tSAMPLES\tSIZE")
	for _, d := range st.Datasets {
		if len(d.Epochs) == 0 {
			fmt.Fprintf(tw, "%s\t-\tnone cached\t\t\n", d.Dataset)
		}
		for _, e := range d.Epochs {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", d.Dataset, e.Epoch, e.State, e.Samples, humanize.IBytes(uint64(e.Bytes)))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range st.Datasets {
		for _, o := range d.Other {
			verb := "are"
			if len(o.Epochs) == 1 {
				verb = "is"
			}
			fmt.Fprintf(stdout, "%s: %s (%s) %s cached under seed %d, pipeline %s, decoder %s, shard size %d: this server does not read it\n",
				d.Dataset, epochsWord(o.Epochs), humanize.IBytes(uint64(o.Bytes)), verb, o.Seed, o.Pipeline, o.Decoder, o.ShardSize)
		}
	}
	return nil
}
