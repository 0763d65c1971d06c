package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/loaderd/loaderd/augment"
)

// pipelineGrammar is the first part of `loaderd pipelines`.
const pipelineGrammar = `A pipeline is text: ops joined by '|', each op name(arg=value,...), e.g.
  --pipeline 'random_resized_crop(size=176)|hflip(p=0.5)|color_jitter(brightness=0.4)'
A value is a number, a range a:b, or a list a,b,c (a comma followed by an item
without '=' continues the previous argument's list). Arguments may come in any
order; an omitted one takes the default shown below (size has none). Quote the
text in the shell. The pipeline must end in a fixed size (random_resized_crop,
center_crop or resize(size=H,W)) so that every row has the same shape. The
geometric ops (crops, resizes, flips) are composed and resampled once; colour
ops then run on the result; normalize must be last.`

func runPipelines(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var decoder string
	fs := newFlags("pipelines", "[PIPELINE] [--decoder D]")
	fs.StringVar(&decoder, "decoder", "auto", "JPEG `DECODER`: auto (libjpeg-turbo when built in, else go), libjpeg-turbo, go")
	fs.notes = `Without PIPELINE: the grammar, every op with its arguments and defaults, and
the presets. With PIPELINE: whether it parses, its canonical text, its output
shape and its fingerprint (part of the cache key, with --seed and the dataset).`
	if err := parse(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() == 1 {
		p, err := parsePipelineArg("PIPELINE", fs.Arg(0), decoder)
		if err != nil {
			return err
		}
		dtype := "uint8"
		if p.Float32() {
			dtype = "float32"
		}
		tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintf(tw, "canonical\t%s\n", p)
		fmt.Fprintf(tw, "sample\t%s %v %v, %d bytes\n", dtype, p.Shape(), p.DimNames(), p.RowBytes())
		fmt.Fprintf(tw, "random\t%v\n", p.Random())
		fmt.Fprintf(tw, "decoders\t%s\n", p.Decoder())
		fmt.Fprintf(tw, "fingerprint\t%s\n", p.Fingerprint())
		return tw.Flush()
	}
	fmt.Fprintf(stdout, "%s\n\nOps, with every argument and its default:\n", pipelineGrammar)
	tw := tabwriter.NewWriter(stdout, 0, 8, 2, ' ', 0)
	var presets []string
	for _, line := range augment.Ops() {
		if p, ok := strings.CutPrefix(line, "preset "); ok {
			presets = append(presets, p)
			continue
		}
		op, what, _ := strings.Cut(line, "  ")
		fmt.Fprintf(tw, "  %s\t%s\n", op, strings.TrimSpace(what))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nPresets (--pipeline NAME):")
	for _, p := range presets {
		name, text, _ := strings.Cut(p, " = ")
		fmt.Fprintf(tw, "  %s\t= %s\n", name, text)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nThe default is --pipeline %s. `loaderd pipelines 'TEXT'` checks a pipeline\nand prints its canonical text and output shape.\n", defaultPipeline)
	return nil
}
