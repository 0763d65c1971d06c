// Command loaderd decodes and augments training images once, keeps the
// augmented epochs in an epoch-aware Arrow cache, and serves batches to
// trainers over Arrow Flight. Run `loaderd help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at link time: -ldflags "-X main.version=v0.1.0".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// A usageError is a wrong command, flag or value: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errFound is returned by commands that ran fine but found problems
// (scan: undecodable files): exit status 1 without a second message.
var errFound = errors.New("problems found")

func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "loaderd: %v\n", err)
		return 2
	case errors.Is(err, errFound):
		return 1
	default:
		fmt.Fprintf(stderr, "loaderd: %v\n", err)
		return 1
	}
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "serve datasets to trainers over Arrow Flight", runServe},
		{"precompute", "write augmented epochs into the cache (offline)", runPrecompute},
		{"fetch", "stream a request from a server and report images/s and MB/s", runFetch},
		{"scan", "decode every file of a dataset and list the broken ones", runScan},
		{"topology", "show GPUs, NUMA nodes and worker placement", runTopology},
		{"bench", "measure throughput beside the torchvision peer and the machine's limits", runBench},
		{"demo", "serve a built-in sample dataset and stream two epochs from it", runDemo},
		{"version", "print the version, the JPEG decoder and the Go runtime", runVersion},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return usagef("no command given")
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" || name == "-help" {
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		printUsage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	printUsage(stderr)
	return usagef("unknown command %q", name)
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: loaderd <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `loaderd <command> --help` for its flags.")
}
