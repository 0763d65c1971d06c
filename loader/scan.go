package loader

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/service"
)

// ScanOptions tunes Scan. The zero value checks with GOMAXPROCS workers,
// the default decoders and augment's default limits.
type ScanOptions struct {
	Workers  int
	Decoder  string // as augment.PipelineOptions.Decoder: "" or "auto", "go", "libjpeg-turbo"
	Limits   augment.Limits
	Progress func(done, total int) // called after each file, from any goroutine
}

// Scan decodes every sample of d in full and reports those that cannot be
// used, sorted by index, each with its kind (SPEC §5): undecodable,
// unreadable (after retries, or a manifest's entry whose file could not be
// listed: d may be a ManifestError's Listing), or changed since d was listed. It reads one file per worker at a time, so its
// memory does not grow with the dataset.
func Scan(ctx context.Context, d *Dataset, opts *ScanOptions) ([]service.SampleError, error) {
	var o ScanOptions
	if opts != nil {
		o = *opts
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if _, err := augment.ResolveDecoder(o.Decoder); err != nil {
		return nil, fmt.Errorf("loader: scan %s: %w", d.Name, err)
	}
	bad := make([]*service.SampleError, d.Len()) // one slot per index: order never depends on scheduling
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Workers)
	for i := range d.Len() {
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			if e, ok := d.unlisted[i]; ok { // a manifest's entry without its file
				bad[i] = &e
				if o.Progress != nil {
					o.Progress(int(done.Add(1)), d.Len())
				}
				return nil
			}
			kind, reason := "", ""
			b, err := d.ReadFile(i)
			var re *ReadError
			var ce *ChangedError
			switch {
			case errors.As(err, &re):
				kind, reason = service.SampleUnreadable, re.Err.Error()
			case errors.As(err, &ce):
				kind, reason = service.SampleChanged, ce.Reason
			case err != nil:
				kind, reason = service.SampleUnreadable, err.Error()
			default:
				if err := augment.CheckDecoder(b, o.Decoder, o.Limits); err != nil {
					kind, reason = service.SampleUndecodable, err.Error()
				}
			}
			if kind != "" {
				bad[i] = &service.SampleError{Index: int64(i), Path: d.Samples[i].Path, Kind: kind, Reason: reason}
			}
			if o.Progress != nil {
				o.Progress(int(done.Add(1)), d.Len())
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("loader: scan %s: %w", d.Name, err)
	}
	if err := ctx.Err(); err != nil { // cancelled between files: the report would be partial
		return nil, fmt.Errorf("loader: scan %s: %w", d.Name, err)
	}
	var out []service.SampleError
	for _, e := range bad {
		if e != nil {
			out = append(out, *e)
		}
	}
	slices.SortFunc(out, func(a, b service.SampleError) int { return int(a.Index - b.Index) })
	return out, nil
}
