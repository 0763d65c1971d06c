// Command loaderd decodes and augments training images once, keeps the
// augmented epochs in an epoch-aware Arrow cache, and serves batches to
// trainers over Arrow Flight. Run `loaderd help` for the commands.
//
// Exit status: 0 done; 1 a failure while running; 2 a usage error (an
// unknown command or flag, a malformed value, a dataset path without
// samples, a request the server refuses as invalid); 3 `scan` found
// undecodable files; 130 interrupted (SIGINT or SIGTERM) before the
// command finished. `serve` and `demo` stop on a signal and exit 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/loaderd/loaderd"
)

// version is the release version, written once in python/loaderd/VERSION
// and shared with the Python package.
var version = loaderd.Version()

// Exit statuses, the same for every command (see the package comment).
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitFound       = 3
	exitInterrupted = 130
)

// exitStatusHelp ends every command's --help.
const exitStatusHelp = `Exit status: 0 done, 1 failure while running, 2 usage error (unknown flag,
malformed value, dataset path without samples, a request the server refuses),
130 interrupted before done.`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	os.Exit(exitCode(err, interrupted, os.Stderr))
}

// A usageError is a wrong command, flag or value: exit status 2. msg names
// the problem and its fix in one line; cmd is the command whose --help the
// message points to ("" for the command list).
type usageError struct{ cmd, msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// errFound is returned by commands that ran fine but found problems
// (scan: undecodable files): exit status 3 without a second message.
var errFound = errors.New("problems found")

// A helpRequest carries a command's --help text, printed on stdout.
type helpRequest struct{ text string }

func (*helpRequest) Error() string { return "help requested" }

// exitCode prints err (one line, plus a pointer to --help for usage
// errors) and returns the exit status. interrupted says a signal ended
// the command.
func exitCode(err error, interrupted bool, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		prog := strings.TrimSpace("loaderd " + ue.cmd)
		fmt.Fprintf(stderr, "%s: %s\n", prog, firstLine(ue.msg))
		if ue.cmd == "" {
			fmt.Fprintln(stderr, "see `loaderd help`")
		} else {
			fmt.Fprintf(stderr, "see `%s --help`\n", prog)
		}
		return exitUsage
	case errors.Is(err, errFound):
		return exitFound
	case interrupted:
		fmt.Fprintf(stderr, "loaderd: interrupted: %s\n", firstLine(err.Error()))
		return exitInterrupted
	default:
		fmt.Fprintf(stderr, "loaderd: %s\n", firstLine(err.Error()))
		return exitFailure
	}
}

// firstLine keeps a message to one line: wrapped errors from libraries
// sometimes carry newlines.
func firstLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
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
		{"cache-status", "ask a server which epochs its cache holds, and which it will not read", runCacheStatus},
		{"evict", "ask a server to free cached epochs: some, those it does not read, or all of a dataset", runEvict},
		{"rescan", "ask a server to list its datasets again now (network file systems)", runRescan},
		{"dataset-errors", "ask a server which samples of a dataset it found undecodable", runDatasetErrors},
		{"pipelines", "print the pipeline grammar, every op with its arguments, and the presets", runPipelines},
		{"topology", "show GPUs, NUMA nodes and worker placement", runTopology},
		{"bench", "measure throughput beside DALI, tf.data, torchvision and the machine's limits", runBench},
		{"demo", "serve a generated sample dataset; stream epoch 0 twice (computed, cached) and epoch 1", runDemo},
		{"version", "print the version, the decoders and the Go runtime", runVersion},
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
		if c.name != name {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var help *helpRequest
		var ue *usageError
		switch {
		case errors.As(err, &help):
			_, err = io.WriteString(stdout, help.text)
		case errors.As(err, &ue) && ue.cmd == "":
			ue.cmd = c.name
		}
		return err
	}
	names := make([]string, 0, len(commands()))
	for _, c := range commands() {
		names = append(names, c.name)
	}
	if near := closest(name, names); near != "" {
		return usagef("unknown command %q; did you mean %s?", name, near)
	}
	return usagef("unknown command %q; the commands are %s, … (`loaderd help` lists all %d)", name, strings.Join(names[:6], ", "), len(names))
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: loaderd <command> [flags] [arguments]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-15s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun `loaderd <command> --help` for its flags.\n\n%s\n", exitStatusHelp)
}
