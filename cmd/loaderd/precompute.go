package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/loaderd/loaderd/loader"
	"github.com/loaderd/loaderd/service"
)

func runPrecompute(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f pipelineFlags
	var epochs, partText string
	fs := newFlags("precompute", "--data NAME=PATH --epochs LIST [flags]")
	fs.StringVar(&epochs, "epochs", "", "epochs to precompute: `LIST` like 0-9 or 0,2,5 (required)")
	fs.StringVar(&partText, "part", "", "compute only part `K/N` of each epoch's shards (shards s with s mod N = K), e.g. a Slurm array task's share")
	f.register(fs.FlagSet)
	f.registerRemote(fs.FlagSet)
	fs.notes = `Each image is decoded once for all the epochs. Finished shards are kept when the
run stops (Ctrl-C, a full budget); running the same command again continues.
serve reads these epochs when given the same ` + keyFlagsText() + `.
` + sizeNote + `

With --remote-cache, every shard is uploaded to the shared tier once committed,
and shards the tier already holds are skipped. --part K/N splits the work over
N machines in any order (deploy/ has Slurm and Kubernetes recipes): the N parts
together write the same shard files as one machine's precompute.`
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
	var part *loader.Part
	if partText != "" {
		p, err := parsePart(partText)
		if err != nil {
			return usagef("--part %q: %v", partText, err)
		}
		part = &p
	}
	logger := newLogger(stderr, f.logLevel)
	st, err := buildStack(ctx, &f, 0, logger, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	others, err := otherWarnings(st, &f, "") // the server's address is not known here
	if err != nil {
		return err
	}
	for _, w := range others {
		logger.Warn(w.msg, w.args...)
	}
	if part != nil || st.tier != nil {
		p := loader.Part{K: 0, N: 1}
		if part != nil {
			p = *part
		}
		return precomputeParts(ctx, st, f.data, list, p, stdout, stderr, logger)
	}
	for _, ds := range f.data {
		report := newProgress(stderr, ds.Name, logger)
		sum, err := st.loader.Precompute(ctx, ds.Name, list, report.update)
		report.finish(err == nil, sum.Computed)
		var budget *loader.BudgetError
		switch {
		case err == nil:
		case errors.As(err, &budget) && len(budget.Kept) > 0:
			// The epochs that fit are done and kept: say so, then why the rest is not.
			fmt.Fprintf(stdout, "%s: %s: %s\n", ds.Name, epochsWord(sum.Epochs), summaryText(sum))
			return fmt.Errorf("%w (--cache-budget)", err)
		case budget != nil:
			return fmt.Errorf("%w (--cache-budget)", err)
		case ctx.Err() != nil:
			return fmt.Errorf("precompute of %s stopped after %s; the finished shards are kept, and the same command continues: %w", ds.Name, count(sum.Computed, "sample", "samples"), err)
		default:
			return err
		}
		fmt.Fprintf(stdout, "%s: %s: %s\n", ds.Name, epochsWord(sum.Epochs), summaryText(sum))
	}
	return nil
}

// summaryText words what a precompute did: every sample of the request is
// computed, resumed from a partial shard or found cached.
func summaryText(sum service.PrecomputeSummary) string {
	resumed := ""
	if sum.Resumed > 0 {
		resumed = fmt.Sprintf(", %d resumed from partial shards", sum.Resumed)
	}
	return fmt.Sprintf("%s computed%s, %d already cached, %.1f s, %.0f images/s, %s on disk",
		count(sum.Computed, "sample", "samples"), resumed, sum.Cached, sum.Seconds, sum.ImagesPerSec, humanize.IBytes(uint64(sum.Bytes)))
}

// precomputeParts runs part p of the epochs of every dataset, uploading
// to the tier when there is one.
func precomputeParts(ctx context.Context, st *stack, data datasetFlag, epochs []int, p loader.Part, stdout, stderr io.Writer, logger *slog.Logger) error {
	for _, ds := range data {
		report := newProgress(stderr, ds.Name, logger)
		sum, err := st.loader.PrecomputePart(ctx, ds.Name, epochs, p, report.update)
		report.finish(err == nil, sum.Computed)
		if err != nil {
			return err
		}
		where := "the cache"
		if st.tier != nil {
			where = st.tier.URL()
		}
		fmt.Fprintf(stdout, "%s: part %s of %s: %s, %d already in %s, %d uploaded; %s\n",
			ds.Name, p, epochsWord(sum.Epochs), count(sum.Shards, "shard", "shards"), sum.InTier, where, sum.Uploaded, summaryText(sum.PrecomputeSummary))
	}
	return nil
}

// parsePart reads --part K/N.
func parsePart(v string) (loader.Part, error) {
	ks, ns, ok := strings.Cut(v, "/")
	k, err1 := strconv.Atoi(strings.TrimSpace(ks))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	switch {
	case !ok || err1 != nil || err2 != nil:
		return loader.Part{}, fmt.Errorf("want K/N, e.g. 0/4 for the first of four parts")
	case n < 1 || n > 1<<20:
		return loader.Part{}, fmt.Errorf("N = %d: want 1..1048576 parts", n)
	case k < 0 || k >= n:
		return loader.Part{}, fmt.Errorf("K = %d: want 0 ≤ K < N = %d (parts are numbered from 0)", k, n)
	}
	return loader.Part{K: k, N: n}, nil
}

// progress shows precompute progress as a bar on a terminal and as a log
// line every few seconds otherwise.
type progress struct {
	w      io.Writer
	name   string
	bar    *progressbar.ProgressBar
	logger *slog.Logger
	last   time.Time
	tty    bool  // w is a terminal: draw a bar
	total  int64 // of the latest report: samples the request needs
}

func newProgress(w io.Writer, name string, logger *slog.Logger) *progress {
	p := &progress{w: w, name: name, logger: logger, last: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

// newBar makes the terminal's bar once the total is known: a bar of
// unknown length would start a spinner goroutine that keeps drawing after
// Exit.
func (p *progress) newBar(total int64) {
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription("precompute "+p.name),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("img"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionFullWidth(),
	)
}

func (p *progress) update(pr service.PrecomputeProgress) error {
	p.total = pr.Total
	if p.tty && p.bar == nil && pr.Total > 0 {
		p.newBar(pr.Total)
	}
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

// finish ends the progress display: a full bar when done; otherwise the
// bar stays where the work stopped (done samples of the request), and a
// line says so, since the bar's last drawing may be a moment old.
func (p *progress) finish(ok bool, done int64) {
	switch {
	case !ok && p.total == 0 && p.bar == nil:
		// Stopped before it began (a budget too small for any epoch, say):
		// the error says why; a line of zeros would say nothing.
	case ok && p.bar != nil:
		p.bar.Finish()
		fmt.Fprintln(p.w)
	case ok:
	case p.tty:
		if p.bar != nil {
			p.bar.Exit()
			fmt.Fprintln(p.w)
		}
		fmt.Fprintf(p.w, "precompute %s: stopped at %d of %d samples (%.0f%%)\n", p.name, done, p.total, percent(done, p.total))
	default:
		p.logger.Info("precompute stopped", "dataset", p.name, "done", done, "total", p.total,
			"percent", int(percent(done, p.total)))
	}
}

func percent(n, of int64) float64 {
	if of <= 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// epochsWord writes "epoch 3" or "epochs 0-2,5".
func epochsWord(es []int) string {
	if len(es) == 1 {
		return fmt.Sprintf("epoch %d", es[0])
	}
	return "epochs " + loader.FormatEpochs(es)
}
