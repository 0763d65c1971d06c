package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/loader"
)

// newFlags makes a command's flag set: errors are returned, not fatal, and
// --help prints the synopsis and every flag.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("loaderd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: loaderd %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, turning a flag error into a usage error (exit 2) and
// refusing stray positional arguments beyond want.
func parse(fs *flag.FlagSet, args []string, positional int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{msg: err.Error()}
	}
	if fs.NArg() > positional {
		return usagef("%s: unexpected argument %q", fs.Name(), fs.Arg(positional))
	}
	return nil
}

// datasetFlag collects repeated --data NAME=PATH values.
type datasetFlag []loader.DatasetSpec

func (d *datasetFlag) String() string {
	var parts []string
	for _, s := range *d {
		parts = append(parts, s.Name+"="+s.Path)
	}
	return strings.Join(parts, ",")
}

func (d *datasetFlag) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("want NAME=PATH, got %q", v)
	}
	if slices.ContainsFunc(*d, func(s loader.DatasetSpec) bool { return s.Name == name }) {
		return fmt.Errorf("dataset %q given twice", name)
	}
	*d = append(*d, loader.DatasetSpec{Name: name, Path: path})
	return nil
}

// byteSize is a flag holding a byte count written as 123, 64K, 50G, 1.5T.
type byteSize int64

func (b *byteSize) String() string { return formatBytes(int64(*b)) }

func (b *byteSize) Set(v string) error {
	n, err := parseBytes(v)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseBytes(v string) (int64, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "IB"), "B")
	mult := int64(1)
	if s != "" {
		if i := strings.IndexByte("KMGTP", s[len(s)-1]); i >= 0 {
			mult = int64(1) << (10 * (i + 1))
			s = s[:len(s)-1]
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f*float64(mult) > 1<<62 {
		return 0, fmt.Errorf("bad size %q (want e.g. 500M, 50G, 2T)", v)
	}
	return int64(f * float64(mult)), nil
}

func formatBytes(n int64) string {
	if n == 0 {
		return "0"
	}
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10)
	}
	f, i := float64(n), -1
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.4g%c", f, "KMGTP"[i])
}

// parseEpochs reads "0-9", "0,2,5" or a mix ("0-3,7"): sorted, unique.
func parseEpochs(v string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad epoch %q in %q", part, v)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad epoch range %q in %q", part, v)
			}
		}
		if b-a > 1<<20 || b >= 1<<31 {
			return nil, fmt.Errorf("epoch range %q is too large", part)
		}
		for e := a; e <= b; e++ {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// pipelineFlags are the flags shared by serve, precompute and bench that
// decide what a sample's bytes are, plus where they are cached.
type pipelineFlags struct {
	data        datasetFlag
	pipeline    string
	decoder     string
	seed        uint64
	cacheDir    string
	cacheBudget byteSize
	workers     int
	shardSize   int
	onError     string
	logLevel    string
	requireGPU  bool
}

func (p *pipelineFlags) register(fs *flag.FlagSet) {
	fs.Var(&p.data, "data", "dataset `NAME=PATH` (repeatable); PATH an ImageFolder directory or a manifest file")
	fs.StringVar(&p.pipeline, "pipeline", "imagenet-train", "augmentation `pipeline`: a preset (imagenet-train, imagenet-val) or canonical text")
	fs.StringVar(&p.decoder, "decoder", "auto", "JPEG decoder: auto (libjpeg-turbo when built in), go")
	fs.Uint64Var(&p.seed, "seed", 0, "random `seed` of epoch order and augmentation")
	fs.StringVar(&p.cacheDir, "cache-dir", defaultCacheDir(), "`directory` of the epoch cache")
	fs.Var(&p.cacheBudget, "cache-budget", "bytes the cache may use on disk, e.g. 200G (0 = unlimited)")
	fs.IntVar(&p.workers, "workers", 0, "decode/augment workers (0 = one per CPU)")
	fs.IntVar(&p.shardSize, "shard-size", 1024, "samples per cache shard file")
	fs.StringVar(&p.onError, "on-error", "substitute", "undecodable samples: substitute (next decodable sample) or fail")
	fs.StringVar(&p.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.BoolVar(&p.requireGPU, "require-gpu", false, "fail instead of falling back when NVML or a GPU is missing")
}

// check validates the values flag parsing cannot.
func (p *pipelineFlags) check(needData bool) error {
	if needData && len(p.data) == 0 {
		return usagef("--data NAME=PATH is required")
	}
	if p.onError != "substitute" && p.onError != "fail" {
		return usagef("--on-error: want substitute or fail, got %q", p.onError)
	}
	if p.decoder != "auto" && p.decoder != "go" && p.decoder != "libjpeg-turbo" {
		return usagef("--decoder: want auto, go or libjpeg-turbo, got %q", p.decoder)
	}
	if p.workers < 0 {
		return usagef("--workers must not be negative")
	}
	if p.shardSize < 1 || p.shardSize > 1<<20 {
		return usagef("--shard-size must be in 1..1048576")
	}
	if _, err := parseLevel(p.logLevel); err != nil {
		return err
	}
	return nil
}

func (p *pipelineFlags) parsePipeline() (*augment.Pipeline, error) {
	pl, err := augment.ParsePipeline(p.pipeline, &augment.PipelineOptions{Decoder: p.decoder})
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--pipeline: %v", err)}
	}
	return pl, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usagef("--log-level: %v", err)
	}
	return l, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	l, _ := parseLevel(level)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// defaultCacheDir is $XDG_CACHE_HOME/loaderd, else ~/.cache/loaderd (SPEC §6).
func defaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "loaderd")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "loaderd")
	}
	return filepath.Join(os.TempDir(), "loaderd-cache")
}
