package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/dustin/go-humanize"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/service"
)

// The commands that ask a running server (its DoAction verbs, through the
// Go client): cache-status, evict, rescan, dataset-errors. Each takes the
// connection flags of fetch (connFlags) and --json for the action's result.

// ask connects to the server c names, makes one call on it and closes the
// connection. A malformed --addr is a usage error; the server's errors come
// back as serverError words them (a dataset not found names those served).
func ask[T any](ctx context.Context, c *connFlags, call func(*flightsvc.Client) (T, error)) (T, error) {
	var zero T
	copts, err := c.options()
	if err != nil {
		return zero, err
	}
	cl, err := flightsvc.Dial(ctx, c.addr, copts)
	if err != nil {
		return zero, usagef("--addr %q: %v", c.addr, err)
	}
	defer cl.Close()
	res, err := call(cl)
	if err != nil {
		return zero, serverError(c.addr, err, c.served(ctx, copts, err))
	}
	return res, nil
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runCacheStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c connFlags
	var dataset string
	var asJSON bool
	fs := newFlags("cache-status", "[--dataset NAME] [--addr HOST:PORT] [flags]")
	fs.StringVar(&dataset, "dataset", "", "only dataset `NAME` (default: every dataset the server serves)")
	fs.BoolVar(&asJSON, "json", false, "print the cache-status action's JSON")
	c.register(fs.FlagSet)
	fs.notes = `Asks a running server (the cache-status action) which epochs of its datasets
the cache holds (the rows of partial shards counted), and which epochs of the same
datasets it holds but never reads: under another pipeline, seed, decoder or shard
size, or of an earlier listing of the dataset (its files changed since).
loaderd evict --other removes those.`
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	var body []byte
	if dataset != "" {
		body, _ = json.Marshal(map[string]string{"dataset": dataset})
	}
	res, err := ask(ctx, &c, func(cl *flightsvc.Client) ([][]byte, error) {
		return cl.Action(ctx, flightsvc.ActionCacheStatus, body)
	})
	if err != nil {
		return err
	}
	if len(res) != 1 {
		return fmt.Errorf("the server at %s answered cache-status with %d results, want 1", c.addr, len(res))
	}
	var st service.CacheStatus
	if err := json.Unmarshal(res[0], &st); err != nil {
		return fmt.Errorf("the server at %s: cache-status: %w", c.addr, err)
	}
	if asJSON {
		var b bytes.Buffer // indented, as every command's --json
		if err := json.Indent(&b, res[0], "", "  "); err != nil {
			return fmt.Errorf("the server at %s: cache-status: %w", c.addr, err)
		}
		b.WriteByte('\n')
		_, err := b.WriteTo(stdout)
		return err
	}
	return writeCacheStatus(stdout, st, c.addr)
}

// writeCacheStatus prints a cache status: a table of the epochs the server
// reads, then a line for each group of epochs it does not, and the evict
// command that frees them from the server at addr (the --addr given).
func writeCacheStatus(w io.Writer, st service.CacheStatus, addr string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
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
			verb, them := "are", "them"
			if len(o.Epochs) == 1 {
				verb, them = "is", "it"
			}
			if o.Listing == service.ListingEarlier {
				fmt.Fprintf(w, "%s: %s (%s) %s cached from an earlier listing of the dataset (listed %s, %s; its files changed since): no server reads %s\n",
					d.Dataset, epochsWord(o.Epochs), humanize.IBytes(uint64(o.Bytes)), verb, o.Listed, count(o.Samples, "sample", "samples"), them)
				continue
			}
			fmt.Fprintf(w, "%s: %s (%s) %s cached under seed %d, pipeline %s, decoder %s, shard size %d: this server does not read %s\n",
				d.Dataset, epochsWord(o.Epochs), humanize.IBytes(uint64(o.Bytes)), verb, o.Seed, o.Pipeline, o.Decoder, o.ShardSize, them)
		}
		if len(d.Other) > 0 {
			fmt.Fprintf(w, "%s: `%s` removes what this server does not read\n", d.Dataset, evictOtherCommand(d.Dataset, addr))
		}
	}
	return nil
}

func runEvict(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c connFlags
	var ev flightsvc.Eviction
	var epochs string
	var asJSON bool
	fs := newFlags("evict", "--dataset NAME (--epochs LIST | --other | --all) [--addr HOST:PORT] [flags]")
	fs.StringVar(&ev.Dataset, "dataset", "", "dataset `NAME` (required)")
	fs.StringVar(&epochs, "epochs", "", "epochs to free: `LIST` like 0-9 or 0,2,5")
	fs.BoolVar(&ev.Other, "other", false, "free the epochs the server does not read: under another pipeline, seed, decoder or shard size, or of an earlier listing of the dataset (cache-status shows them)")
	fs.BoolVar(&ev.All, "all", false, "free every cached epoch of the dataset: those the server reads and those --other frees")
	fs.BoolVar(&asJSON, "json", false, "print the cache status after it as JSON")
	c.register(fs.FlagSet)
	fs.notes = `Asks a running server to free epochs of a dataset from its cache (the evict
action), then prints what the cache holds. An epoch being streamed shows
evicting and is freed when its streams end; an evicted epoch is not prefetched
again until a stream asks for it. --epochs and --other go together; --all
stands alone.`
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	switch {
	case ev.Dataset == "":
		return usagef("--dataset NAME is required: a NAME the server was started with (serve --data NAME=PATH)")
	case ev.All && (epochs != "" || ev.Other):
		return usagef("--all frees every epoch: give it without --epochs or --other")
	case !ev.All && !ev.Other && epochs == "":
		return usagef("say what to free: --epochs LIST (e.g. 0-3), --other (what the server does not read) or --all")
	}
	if epochs != "" {
		list, err := parseEpochs(epochs)
		if err != nil {
			return usagef("--epochs: %v", err)
		}
		ev.Epochs = list
	}
	st, err := ask(ctx, &c, func(cl *flightsvc.Client) (service.CacheStatus, error) { return cl.Evict(ctx, ev) })
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, st)
	}
	for _, line := range evictionLines(ev, st.Evicted) {
		fmt.Fprintln(stdout, line)
	}
	fmt.Fprintln(stdout, "the cache now holds:")
	return writeCacheStatus(stdout, st, c.addr)
}

// evictionLines words what the evict action did, from its results, a
// line for each group: the epochs evicted, those in use (freed when their
// streams end), those that were not cached; then the epochs the server does
// not read that --other or --all freed.
func evictionLines(ev flightsvc.Eviction, results []service.EpochEviction) []string {
	var out []string
	for _, other := range []bool{false, true} {
		by := map[string][]int{}
		n := 0
		for _, r := range results {
			if r.Other == other {
				by[r.Result] = append(by[r.Result], r.Epoch)
				n++
			}
		}
		if other {
			if ev.Other || ev.All {
				freed, inUse := len(by[service.EvictFreed]), len(by[service.EvictInUse])
				switch {
				case n == 0:
					out = append(out, ev.Dataset+": the cache held no epoch the server does not read")
				case inUse == 0:
					out = append(out, fmt.Sprintf("%s: evicted %s the server does not read", ev.Dataset, count(freed, "epoch", "epochs")))
				default:
					out = append(out, fmt.Sprintf("%s: evicted %s the server does not read; %d in use, freed when their streams end", ev.Dataset, count(freed, "epoch", "epochs"), inUse))
				}
			}
			continue
		}
		if es := by[service.EvictFreed]; len(es) > 0 {
			out = append(out, fmt.Sprintf("%s: evicted %s", ev.Dataset, epochsWord(es)))
		}
		if es := by[service.EvictInUse]; len(es) > 0 {
			out = append(out, fmt.Sprintf("%s: %s in use (streamed or being written): evicting, freed when that ends", ev.Dataset, epochsWord(es)))
		}
		if es := by[service.EvictNotCached]; len(es) > 0 {
			out = append(out, fmt.Sprintf("%s: %s not cached: nothing to evict", ev.Dataset, epochsWord(es)))
		}
		if ev.All && n == 0 {
			out = append(out, ev.Dataset+": the cache held no epoch the server reads")
		}
	}
	return out
}

func runRescan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c connFlags
	var dataset string
	var asJSON bool
	fs := newFlags("rescan", "[--dataset NAME] [--addr HOST:PORT] [flags]")
	fs.StringVar(&dataset, "dataset", "", "only dataset `NAME` (default: every dataset the server serves)")
	fs.BoolVar(&asJSON, "json", false, "print the rescan action's result as JSON")
	c.register(fs.FlagSet)
	fs.notes = `Asks a running server to list its datasets again now (the rescan action), for
changes it cannot notice by itself: on NFS and other network file systems,
where serve's --rescan-interval otherwise decides. New requests see a changed
listing at once; streams planned on the old one end with FailedPrecondition
when they need a changed file. The old listing's cached epochs are then
listed by cache-status under other.`
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	res, err := ask(ctx, &c, func(cl *flightsvc.Client) (service.RescanResult, error) { return cl.Rescan(ctx, dataset) })
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(stdout, res)
	}
	for _, d := range res.Datasets {
		what := "unchanged"
		if d.Changed {
			what = "changed: new requests see the new listing"
		}
		fp := d.Fingerprint
		if len(fp) > 12 {
			fp = fp[:12]
		}
		fmt.Fprintf(stdout, "%s: %s in %s, fingerprint %s: %s\n", d.Dataset, count(d.Samples, "sample", "samples"),
			count(d.Classes, "class", "classes"), fp, what)
	}
	return nil
}

func runDatasetErrors(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c connFlags
	var dataset string
	var asJSON bool
	fs := newFlags("dataset-errors", "--dataset NAME [--addr HOST:PORT] [flags]")
	fs.StringVar(&dataset, "dataset", "", "dataset `NAME` (required)")
	fs.BoolVar(&asJSON, "json", false, "print the dataset-errors action's result as JSON")
	c.register(fs.FlagSet)
	fs.notes = `Asks a running server which samples of a dataset it found undecodable so far
(the dataset-errors action): index, path and reason. It finds them as it
decodes, so the list grows over the first epoch; loaderd scan checks every file
of a dataset at once, without a server.`
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if dataset == "" {
		return usagef("--dataset NAME is required: a NAME the server was started with (serve --data NAME=PATH)")
	}
	errs, err := ask(ctx, &c, func(cl *flightsvc.Client) ([]service.SampleError, error) { return cl.DatasetErrors(ctx, dataset) })
	if err != nil {
		return err
	}
	if asJSON {
		if errs == nil {
			errs = []service.SampleError{}
		}
		return writeJSON(stdout, errs)
	}
	if len(errs) == 0 {
		_, err := fmt.Fprintf(stdout, "%s: no undecodable sample found so far\n", dataset)
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tPATH\tKIND\tREASON")
	for _, e := range errs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Index, e.Path, e.Kind, e.Reason)
	}
	return tw.Flush()
}
