package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/loaderd/loaderd/service"
)

func runPrecompute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f pipelineFlags
	var epochs string
	fs := newFlags("precompute", "--data NAME=PATH --epochs LIST [flags]")
	fs.StringVar(&epochs, "epochs", "", "epochs to precompute: `LIST` like 0-9 or 0,2,5 (required)")
	f.register(fs.FlagSet)
	fs.notes = `Each image is decoded once for all the epochs. Finished shards are kept when the
run stops (Ctrl-C, a full budget); running the same command again continues.
serve reads these epochs when given the same --data, --pipeline, --seed and
--decoder.`
	if err := parse(fs, args, 0); err != nil {
		return err
	}
	if err := f.check(true); err != nil {
		return err
	}
	if epochs == "" {
		return usagef("--epochs is required, e.g. --epochs 0-9 or --epochs 0,2,5")
	}
	list, err := parseEpochs(epochs)
	if err != nil {
		return usagef("--epochs: %v", err)
	}
	logger := newLogger(stderr, f.logLevel)
	st, err := buildStack(ctx, &f, 0, logger, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, ds := range f.data {
		report := newProgress(stderr, ds.Name, logger)
		sum, err := st.loader.Precompute(ctx, ds.Name, list, report.update)
		report.finish(err == nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: epochs %v: %d samples computed, %d already cached, %.1f s, %.0f images/s, %s on disk\n",
			ds.Name, sum.Epochs, sum.Computed, sum.Cached, sum.Seconds, sum.ImagesPerSec, formatBytes(sum.Bytes))
	}
	return nil
}

// progress shows precompute progress as a bar on a terminal and as a log
// line every few seconds otherwise.
type progress struct {
	w      io.Writer
	name   string
	bar    *progressbar.ProgressBar
	logger *slog.Logger
	last   time.Time
}

func newProgress(w io.Writer, name string, logger *slog.Logger) *progress {
	p := &progress{w: w, name: name, logger: logger, last: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(-1,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("precompute "+name),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("img"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionFullWidth(),
		)
	}
	return p
}

func (p *progress) update(pr service.PrecomputeProgress) error {
	if p.bar != nil {
		if p.bar.GetMax64() != pr.Total {
			p.bar.ChangeMax64(pr.Total)
		}
		return p.bar.Set64(pr.Done)
	}
	if time.Since(p.last) >= 5*time.Second || pr.Done == pr.Total {
		p.last = time.Now()
		eta := "?"
		if pr.ImagesPerSec > 0 {
			eta = time.Duration(float64(pr.Total-pr.Done) / pr.ImagesPerSec * float64(time.Second)).Round(time.Second).String()
		}
		p.logger.Info("precompute", "dataset", p.name, "done", pr.Done, "total", pr.Total,
			"images_per_sec", int(pr.ImagesPerSec), "eta", eta)
	}
	return nil
}

// finish ends the bar: full when done, where it stopped otherwise.
func (p *progress) finish(done bool) {
	if p.bar == nil {
		return
	}
	if done {
		p.bar.Finish()
	} else {
		p.bar.Exit()
	}
	fmt.Fprintln(p.w)
}
