package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/gpu"
	"github.com/loaderd/loaderd/loader"
	"github.com/loaderd/loaderd/service"
)

func runScan(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var workers int
	var asJSON bool
	var maxPixels int64
	var decoder string
	fs := newFlags("scan", "DIR|MANIFEST [flags]")
	fs.IntVar(&workers, "workers", 0, "decode workers (0 = one per CPU)")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.Int64Var(&maxPixels, "max-pixels", 0, "largest image accepted, in pixels (0 = the decoder's default)")
	fs.StringVar(&decoder, "decoder", "auto", "decoders to check with, as serve's --decoder: auto, go, libjpeg-turbo")
	fs.notes = "Exit status 3: the scan ran and found undecodable or unreadable files (listed on stdout, each with its kind and reason)."
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("want the dataset to scan: an ImageFolder root (ROOT/<class>/<image>) or a manifest file")
	}
	if workers < 0 {
		return usagef("--workers %d: want 0 (one per CPU) or more", workers)
	}
	if maxPixels < 0 {
		return usagef("--max-pixels %d: want 0 (the decoder's default) or more", maxPixels)
	}
	decName, err := augment.ResolveDecoder(decoder)
	if err != nil {
		return usagef("--decoder: %v", err)
	}
	d, err := loader.OpenDataset("scan", fs.Arg(0))
	var me *loader.ManifestError
	if errors.As(err, &me) {
		d, err = me.Listing, nil // the entries without files are reported with the rest
	}
	if errors.Is(err, loader.ErrDataset) {
		return datasetError("", err)
	} else if err != nil {
		return err
	}
	bad, err := loader.Scan(ctx, d, &loader.ScanOptions{Workers: workers, Decoder: decoder, Limits: augment.Limits{MaxPixels: maxPixels}})
	if err != nil {
		return err
	}
	skipped := 0
	for _, n := range d.Skipped {
		skipped += n
	}
	// Undecodable files are the data's; unreadable ones (or changed during
	// the scan) are the machine's moment: listed apart (SPEC §5).
	undecodable, unreadable := []service.SampleError{}, []service.SampleError{}
	for _, e := range bad {
		if e.Kind == service.SampleUndecodable {
			undecodable = append(undecodable, e)
		} else {
			unreadable = append(unreadable, e)
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(map[string]any{"path": fs.Arg(0), "samples": d.Len(), "classes": len(d.Classes),
			"fingerprint": d.Fingerprint, "decoder": decName, "undecodable": undecodable, "unreadable": unreadable, "skipped": d.Skipped})
	} else {
		fmt.Fprintf(stdout, "%s: %s in %s, %d undecodable (decoder %s)", fs.Arg(0), count(d.Len(), "sample", "samples"),
			count(len(d.Classes), "class", "classes"), len(undecodable), decName)
		if len(unreadable) > 0 {
			fmt.Fprintf(stdout, ", %d could not be read", len(unreadable))
		}
		fmt.Fprintln(stdout)
		if skipped > 0 {
			exts := slices.Sorted(maps.Keys(d.Skipped))
			parts := make([]string, len(exts))
			for i, e := range exts {
				if e == "" {
					e = "(no extension)"
				}
				parts[i] = fmt.Sprintf("%s %d", e, d.Skipped[exts[i]])
			}
			fmt.Fprintf(stdout, "skipped %s whose extension is not an image format loaderd decodes: %s\n", count(skipped, "file", "files"), strings.Join(parts, ", "))
		}
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		for _, e := range bad {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Index, e.Path, e.Kind, e.Reason)
		}
		err = tw.Flush()
	}
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return errFound // exit 3
	}
	return nil
}

func runTopology(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON, requireGPU bool
	var workers int
	fs := newFlags("topology", "[--json] [--workers N] [--require-gpu]")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.IntVar(&workers, "workers", 0, "workers to place (0 = one per CPU)")
	fs.BoolVar(&requireGPU, "require-gpu", false, "fail when NVML or a GPU is missing")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if workers < 0 {
		return usagef("--workers %d: want 0 (one per CPU) or more", workers)
	}
	if workers == 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	// The table and the JSON carry the fallback warning; no log line besides.
	topo, err := gpu.Load(&gpu.Options{RequireGPU: requireGPU, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	pl := gpu.Place(topo, workers)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Topology  *gpu.Topology `json:"topology"`
			Placement gpu.Placement `json:"placement"`
		}{topo, pl})
	}
	return gpu.WriteTable(stdout, topo, pl)
}

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var asJSON bool
	fs := newFlags("version", "[--json]")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	v := struct {
		Version  string `json:"version"`
		Revision string `json:"revision,omitempty"` // VCS commit, when built from a checkout
		Decoder  string `json:"decoders"`           // what --decoder auto picks
		Go       string `json:"go"`
		OS       string `json:"os"`
		Arch     string `json:"arch"`
	}{Version: version, Decoder: augment.DecoderName(), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v.Revision = s.Value
			}
		}
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	rev := ""
	if len(v.Revision) >= 12 {
		rev = " (" + v.Revision[:12] + ")"
	}
	_, err := fmt.Fprintf(stdout, "loaderd %s%s\ndecoders: %s\n%s %s/%s\n", v.Version, rev, v.Decoder, v.Go, v.OS, v.Arch)
	return err
}
