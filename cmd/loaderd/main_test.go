package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dustin/go-humanize"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/bench"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// runCLI runs the command line in-process and returns its exit status.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return exitCode(err, false, &errb), out.String(), errb.String()
}

// TestUsageErrors runs each command's wrong-usage cases: exit status 2,
// and on stderr one line naming the problem and its fix, then a pointer
// to the command's --help. Nothing goes to stdout.
func TestUsageErrors(t *testing.T) {
	data := smallData(t, 4, false)
	empty := t.TempDir()
	cache := t.TempDir()
	flat := t.TempDir()                           // images in the root, no class directories
	busy, err := net.Listen("tcp", "127.0.0.1:0") // a usage error is one whether or not the port is free
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().String()
	for _, f := range []string{"a.jpg", "b.png"} {
		if err := os.WriteFile(filepath.Join(flat, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		args []string
		want string // in the first line of stderr
	}{
		{name: "unknown command", args: []string{"frobnicate"}, want: `unknown command "frobnicate"; the commands are serve, precompute, fetch,`},
		{name: "mistyped command", args: []string{"sevre"}, want: "did you mean serve?"},

		{name: "serve unknown flag", args: []string{"serve", "--frob"}, want: "unknown flag --frob"},
		{name: "serve mistyped flag", args: []string{"serve", "--cache-budet", "1G"}, want: "did you mean --cache-budget?"},
		{name: "serve one dash", args: []string{"serve", "-data", "x=" + data}, want: "two dashes: --data"},
		{name: "serve without data", args: []string{"serve"}, want: "--data NAME=PATH is required"},
		{name: "serve bad data", args: []string{"serve", "--data", "nopath"}, want: "want NAME=PATH"},
		{name: "serve data twice", args: []string{"serve", "--data", "x=" + data, "--data", "x=" + data}, want: `dataset "x" given twice`},
		{name: "serve bad seed", args: []string{"serve", "--data", "x=" + data, "--seed", "abc"}, want: `--seed "abc": want a whole number`},
		{name: "serve seed without value", args: []string{"serve", "--data", "x=" + data, "--seed"}, want: "--seed needs a value"},
		{name: "serve bad on-error", args: []string{"serve", "--data", "x=" + data, "--on-error", "ignore"}, want: "want substitute or fail"},
		{name: "serve bad budget", args: []string{"serve", "--data", "x=" + data, "--cache-budget", "lots"}, want: "want a byte count"},
		{name: "serve budget without unit", args: []string{"serve", "--data", "x=" + data, "--cache-budget", "100"}, want: `--cache-budget "100": give a unit: 100G (GiB), 100M (MiB) or 100K (KiB); B for bytes`},
		{name: "serve budget of a fraction", args: []string{"serve", "--data", "x=" + data, "--cache-budget", "0.5"}, want: `--cache-budget "0.5": give a unit`},
		{name: "serve budget below a byte", args: []string{"serve", "--data", "x=" + data, "--cache-budget", "0.5B"}, want: "less than one byte"},
		{name: "serve budget of part of a byte", args: []string{"serve", "--data", "x=" + data, "--cache-budget", "1.5B"}, want: "not a whole number of bytes: give 1B"},
		{name: "precompute budget without unit", args: []string{"precompute", "--data", "x=" + data, "--epochs", "0", "--cache-budget", "1.5"}, want: "give a unit: 1.5G (GiB)"},
		{name: "bench transfer without unit", args: []string{"bench", "--transfer", "64"}, want: `--transfer "64": give a unit`},
		{name: "serve bad decoder", args: []string{"serve", "--data", "x=" + data, "--decoder", "pillow"}, want: "want one of auto, libjpeg-turbo, go"},
		{name: "serve bad pipeline", args: []string{"serve", "--data", "x=" + data, "--pipeline", "blur(x=1)"}, want: "`loaderd pipelines`"},
		{name: "serve short preset", args: []string{"serve", "--data", "x=" + data, "--pipeline", "imagenet"}, want: `unknown preset or op "imagenet"; did you mean the presets imagenet-train or imagenet-val?`},
		{name: "serve mistyped op", args: []string{"serve", "--data", "x=" + data, "--pipeline", "random_resize_crop(size=8)"}, want: "did you mean the op random_resized_crop?"},
		{name: "serve bad listen", args: []string{"serve", "--data", "x=" + data, "--listen", "nonsense"}, want: `--listen "nonsense": want HOST:PORT`},
		{name: "serve bad metrics listen", args: []string{"serve", "--data", "x=" + data, "--metrics-listen", "9100"}, want: "--metrics-listen"},
		{name: "serve bad drain timeout", args: []string{"serve", "--data", "x=" + data, "--drain-timeout", "soon"}, want: "want a duration"},
		{name: "serve tls cert without key", args: []string{"serve", "--data", "x=" + data, "--tls-cert", "c.pem"}, want: "give both or neither"},
		{name: "serve pprof without metrics", args: []string{"serve", "--data", "x=" + data, "--pprof"}, want: "give --metrics-listen too"},
		{name: "serve stray argument", args: []string{"serve", data}, want: "takes flags only"},
		{name: "serve missing dataset dir", args: []string{"serve", "--data", "x=" + filepath.Join(empty, "nope"), "--listen", "127.0.0.1:0", "--cache-dir", cache, "--log-level", "warn"}, want: "--data"},
		{name: "serve unknown cache group", args: []string{"serve", "--data", "x=" + data, "--cache-group", "nogrp1"}, want: "no such group here; create it: groupadd nogrp1, then usermod -aG nogrp1 USER"},
		{name: "precompute unknown cache group", args: []string{"precompute", "--data", "x=" + data, "--epochs", "0", "--cache-group", "ng1"}, want: "groupadd ng1"},
		{name: "serve missing dataset dir, port taken", args: []string{"serve", "--data", "x=" + filepath.Join(empty, "nope"), "--listen", taken, "--cache-dir", cache, "--log-level", "warn"}, want: "does not exist"},
		{name: "serve mistyped preset, port taken", args: []string{"serve", "--data", "x=" + data, "--pipeline", "imagenet-trian", "--listen", taken, "--cache-dir", cache}, want: "did you mean the preset imagenet-train?"},
		{name: "serve unknown cache group, port taken", args: []string{"serve", "--data", "x=" + data, "--listen", taken, "--cache-group", "nogrp1"}, want: "groupadd nogrp1"},
		{name: "serve token file missing, port taken", args: []string{"serve", "--data", "x=" + data, "--listen", taken, "--cache-dir", cache, "--auth-token-file", filepath.Join(empty, "nope")}, want: "--auth-token-file"},
		{name: "serve token file missing", args: []string{"serve", "--data", "x=" + data, "--listen", "127.0.0.1:0", "--auth-token-file", filepath.Join(empty, "nope")}, want: "--auth-token-file"},

		{name: "precompute missing epochs", args: []string{"precompute", "--data", "x=" + data}, want: "--epochs is required"},
		{name: "precompute bad epochs", args: []string{"precompute", "--data", "x=" + data, "--epochs", "3-1"}, want: "FIRST ≤ LAST"},
		{name: "precompute negative workers", args: []string{"precompute", "--data", "x=" + data, "--epochs", "0", "--workers", "-1"}, want: "--workers -1"},
		{name: "precompute bad shard size", args: []string{"precompute", "--data", "x=" + data, "--epochs", "0", "--shard-size", "0"}, want: "--shard-size 0"},
		{name: "precompute bad log level", args: []string{"precompute", "--data", "x=" + data, "--epochs", "0", "--log-level", "loud"}, want: "--log-level"},
		{name: "precompute empty dataset", args: []string{"precompute", "--data", "x=" + empty, "--epochs", "0", "--cache-dir", cache, "--log-level", "warn"}, want: "--data"},

		{name: "fetch without dataset", args: []string{"fetch"}, want: "--dataset NAME is required"},
		{name: "fetch zero repeat", args: []string{"fetch", "--dataset", "d", "--repeat", "0"}, want: "--repeat 0"},
		{name: "fetch zero batch", args: []string{"fetch", "--dataset", "d", "--batch-size", "0"}, want: "--batch-size 0"},
		{name: "fetch rank past world", args: []string{"fetch", "--dataset", "d", "--rank", "2", "--world-size", "2"}, want: "--rank 2"},
		{name: "fetch negative start batch", args: []string{"fetch", "--dataset", "d", "--start-batch", "-1"}, want: "--start-batch -1"},
		{name: "fetch bool with space", args: []string{"fetch", "--dataset", "d", "--shuffle", "false"}, want: "--shuffle=false"},
		{name: "fetch insecure without tls", args: []string{"fetch", "--dataset", "d", "--tls-insecure"}, want: "go with --tls"},
		{name: "fetch serve flag", args: []string{"fetch", "--dataset", "d", "--seed", "7"}, want: "unknown flag --seed"},
		{name: "fetch digest of clients", args: []string{"fetch", "--dataset", "d", "--digest", "--clients", "2"}, want: "--digest: want --clients 1"},

		{name: "scan without dir", args: []string{"scan"}, want: "ROOT/<class>/<image>"},
		{name: "scan two dirs", args: []string{"scan", data, data}, want: "unexpected argument"},
		{name: "scan missing dir", args: []string{"scan", filepath.Join(empty, "nope")}, want: "does not exist; want an ImageFolder root (ROOT/<class>/<image>)"},
		{name: "scan flat dir", args: []string{"scan", flat}, want: "its 2 images lie in the root itself; an ImageFolder wants ROOT/<class>/<image>"},
		{name: "scan negative workers", args: []string{"scan", data, "--workers", "-2"}, want: "--workers -2"},

		{name: "cache-status stray argument", args: []string{"cache-status", "d"}, want: "takes flags only"},
		{name: "cache-status insecure without tls", args: []string{"cache-status", "--tls-insecure"}, want: "go with --tls"},
		{name: "cache-status bad address", args: []string{"cache-status", "--addr", "http://x:1"}, want: "--addr"},

		{name: "evict without dataset", args: []string{"evict", "--all"}, want: "--dataset NAME is required"},
		{name: "evict of nothing", args: []string{"evict", "--dataset", "d"}, want: "say what to free: --epochs LIST (e.g. 0-3), --other"},
		{name: "evict all and epochs", args: []string{"evict", "--dataset", "d", "--all", "--epochs", "0"}, want: "--all frees every epoch"},
		{name: "evict bad epochs", args: []string{"evict", "--dataset", "d", "--epochs", "3-1"}, want: "FIRST ≤ LAST"},
		{name: "rescan stray argument", args: []string{"rescan", "d"}, want: "takes flags only"},
		{name: "rescan bad address", args: []string{"rescan", "--addr", "http://x:1"}, want: "--addr"},
		{name: "dataset-errors without dataset", args: []string{"dataset-errors"}, want: "--dataset NAME is required"},
		{name: "dataset-errors insecure without tls", args: []string{"dataset-errors", "--dataset", "d", "--tls-insecure"}, want: "go with --tls"},

		{name: "pipelines bad pipeline", args: []string{"pipelines", "blur(x=1)"}, want: `unknown op "blur"; the ops are random_resized_crop,`},
		{name: "pipelines mistyped preset", args: []string{"pipelines", "imagenet-trian"}, want: "did you mean the preset imagenet-train?"},
		{name: "pipelines unknown bare name", args: []string{"pipelines", "blur"}, want: "the presets are imagenet-train and imagenet-val"},
		{name: "pipelines no fixed size", args: []string{"pipelines", "resize(size=256)"}, want: "end with random_resized_crop"},
		{name: "pipelines two arguments", args: []string{"pipelines", "imagenet-val", "imagenet-train"}, want: "unexpected argument"},

		{name: "topology negative workers", args: []string{"topology", "--workers", "-1"}, want: "--workers -1"},
		{name: "topology stray argument", args: []string{"topology", "gpu0"}, want: "takes flags only"},

		{name: "bench bad peer", args: []string{"bench", "--peer", "pytorch"}, want: `--peer "pytorch": want dali, tfdata, torchvision or all`},
		{name: "bench bad peer python", args: []string{"bench", "--peer-python", "dali"}, want: `--peer-python "dali": want PEER=PATH`},
		{name: "bench bad clients", args: []string{"bench", "--clients", "x"}, want: "--clients"},
		{name: "bench zero repeat", args: []string{"bench", "--repeat", "0"}, want: "--repeat 0"},
		{name: "bench tiny transfer", args: []string{"bench", "--transfer", "1K"}, want: "--transfer 1.0 KiB: want 1M or more"},
		{name: "bench bad pipeline", args: []string{"bench", "--pipeline", "hflip"}, want: "`loaderd pipelines`"},
		{name: "bench short preset", args: []string{"bench", "--pipeline", "imagenet"}, want: "the presets imagenet-train or imagenet-val"},
		{name: "precompute mistyped preset", args: []string{"precompute", "--data", "x=" + data, "--epochs", "0", "--pipeline", "imagenet_val"}, want: "did you mean the preset imagenet-val?"},

		{name: "demo no images", args: []string{"demo", "--images", "0"}, want: "--images 0"},
		{name: "demo bad listen", args: []string{"demo", "--listen", "localhost"}, want: "want HOST:PORT"},

		{name: "version stray argument", args: []string{"version", "extra"}, want: `unexpected argument "extra"`},
		{name: "version unknown flag", args: []string{"version", "--jsno"}, want: "did you mean --json?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, tc.args...)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if code != exitUsage || len(lines) != 2 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("loaderd %q: exit %d, stderr:\n%s\nwant exit 2 and two lines, the first mentioning %q", tc.args, code, stderr, tc.want)
			}
			cmd := "loaderd " + tc.args[0]
			see := "see `" + cmd + " --help`"
			if tc.name == "unknown command" || tc.name == "mistyped command" {
				cmd, see = "loaderd", "see `loaderd help`"
			}
			if !strings.HasPrefix(lines[0], cmd+": ") || lines[1] != see {
				t.Errorf("stderr:\n%s\nwant %q first and %q last", stderr, cmd+": ", see)
			}
			words := lines[0] // the message's own words: the paths it quotes count as one word
			for _, a := range tc.args {
				if _, p, _ := strings.Cut(a, "="); strings.HasPrefix(p, "/") {
					a = p
				}
				if strings.HasPrefix(a, "/") {
					words = strings.ReplaceAll(words, a, "PATH")
				}
			}
			if n := utf8.RuneCountInString(words); n > 160 {
				t.Errorf("first line is %d characters, want at most 160: %s", n, lines[0])
			}
			if stdout != "" {
				t.Errorf("stdout of a usage error: %q", stdout)
			}
			if bad := foreignFlags(t, tc.args[0], lines[0], tc.args); len(bad) > 0 && !strings.HasPrefix(tc.name, "unknown command") && !strings.HasPrefix(tc.name, "mistyped command") {
				t.Errorf("%q names %v, which `loaderd %s` does not take", lines[0], bad, tc.args[0])
			}
		})
	}
}

// otherCommand matches a flag the message attributes to another command:
// "serve's --cache-group", "serve --tls-client-ca".
var otherCommand = regexp.MustCompile(`\b(serve|precompute|fetch|demo)('s)? --[a-z][a-z0-9-]*`)

// foreignFlags returns the flags msg names that command does not take,
// leaving out those the user wrote (args) and those msg gives to another
// command by name: every fix a message suggests must be one the command
// can take.
func foreignFlags(t *testing.T, command, msg string, args []string) []string {
	t.Helper()
	_, help, _ := runCLI(t, command, "--help")
	own := map[string]bool{}
	for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
		own[m[1]] = true
	}
	typed := strings.Join(args, " ")
	var bad []string
	for _, f := range flagName.FindAllString(otherCommand.ReplaceAllString(msg, ""), -1) {
		if !own[f] && !strings.Contains(typed, f) {
			bad = append(bad, f)
		}
	}
	return bad
}

// TestNoCommand prints the command list on stderr with exit status 2.
func TestNoCommand(t *testing.T) {
	code, stdout, stderr := runCLI(t)
	if code != exitUsage || stdout != "" || !strings.Contains(stderr, "Commands:") || !strings.Contains(stderr, "no command given") {
		t.Fatalf("loaderd: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestFlagsAnywhere: flags go before or after the positional arguments,
// as --name value or --name=value.
func TestFlagsAnywhere(t *testing.T) {
	data := smallData(t, 6, false)
	for _, args := range [][]string{
		{"scan", data, "--json"},
		{"scan", "--json", data},
		{"scan", "--workers=1", data, "--json=true"},
	} {
		code, out, stderr := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, `"samples": 6`) {
			t.Errorf("loaderd %q: exit %d, %s%s", args, code, out, stderr)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, c := range commands() {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			code, stdout, stderr := runCLI(t, args...)
			if code != 0 || stderr != "" || !strings.HasPrefix(stdout, "Usage: loaderd "+c.name) || !strings.Contains(stdout, "Exit status:") {
				t.Errorf("loaderd %q: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
			}
		}
	}
	code, stdout, _ := runCLI(t, "help")
	if code != 0 || !strings.Contains(stdout, "Commands:") || !strings.Contains(stdout, "Exit status:") {
		t.Errorf("loaderd help: exit %d, %q", code, stdout)
	}
}

// TestUnixSocketDirectory: serve --listen unix:///DIR/NAME.sock makes a
// missing DIR (with --cache-group, 2750 and the group's, so that its
// members reach the socket); where it cannot, the error says how to have
// it made.
func TestUnixSocketDirectory(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct {
		name string
		gid  int
		mode os.FileMode
	}{
		{name: "plain", gid: -1, mode: os.ModeDir | 0o755},
		{name: "group", gid: os.Getgid(), mode: os.ModeDir | os.ModeSetgid | 0o750},
	} {
		dir := filepath.Join(root, tc.name, "run", "loaderd")
		lis, err := listen("listen", "unix://"+filepath.Join(dir, "loaderd.sock"), tc.gid)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		lis.Close()
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if tc.gid >= 0 && fi.Mode() != tc.mode || tc.gid < 0 && fi.Mode()&^0o022 != tc.mode&^0o022 {
			t.Errorf("%s: the socket's directory has mode %v, want %v", tc.name, fi.Mode(), tc.mode)
		}
	}
	// Where this user cannot make it: a directory without write permission,
	// or (for root too) one in sysfs, where no one can.
	locked := filepath.Join(root, "locked")
	if err := os.Mkdir(locked, 0o555); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if _, err := os.Stat("/sys/kernel"); err != nil {
			t.Skip("no sysfs at /sys: root may make a directory anywhere else")
		}
		locked = "/sys"
	}
	_, err := listen("listen", "unix://"+filepath.Join(locked, "loaderd-test", "loaderd.sock"), -1)
	if err == nil || !strings.Contains(err.Error(), "as root: install -d -o ") {
		t.Errorf("a directory this user cannot make: %v; want how to have it made", err)
	}
}

// TestListenBusy: a taken --listen or --metrics-listen port is a runtime
// failure (exit 1) reported before serve logs that it is serving (a usage
// error still wins: TestUsageErrors); demo fails on it before generating
// its images.
func TestListenBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := smallData(t, 4, false)
	for _, flagName := range []string{"--listen", "--metrics-listen"} {
		args := []string{"serve", "--data", "x=" + data, "--cache-dir", t.TempDir(), "--listen", "127.0.0.1:0", flagName, busy.Addr().String()}
		code, _, stderr := runCLI(t, args...)
		if code != exitFailure || !strings.Contains(stderr, "address is in use") || strings.Contains(stderr, "serving") {
			t.Errorf("loaderd %q: exit %d, stderr %q; want exit 1, the address in use, no serving line", args, code, stderr)
		}
	}
	dir := t.TempDir()
	code, out, stderr := runCLI(t, "demo", "--dir", dir, "--listen", busy.Addr().String(), "--images", "4")
	if code != exitFailure || !strings.Contains(stderr, "address is in use") || strings.Contains(out, "generating") || demoImages(filepath.Join(dir, "data")) != 0 {
		t.Errorf("demo on a taken --listen: exit %d\n%s%s; want exit 1, the address in use, before generating images", code, out, stderr)
	}
}

// TestCount: counts in messages take the singular for one ("1 client").
func TestCount(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0 batches"}, {1, "1 batch"}, {2, "2 batches"}} {
		if got := count(tc.n, "batch", "batches"); got != tc.want {
			t.Errorf("count(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{a: "serve", b: "serve", want: 0},
		{a: "sevre", b: "serve", want: 1},
		{a: "cache-budet", b: "cache-budget", want: 1},
		{a: "", b: "abc", want: 3},
		{a: "fetch", b: "scan", want: 5},
	}
	for _, tc := range tests {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestParseEpochs(t *testing.T) {
	tests := []struct {
		in   string
		want []int
		bad  bool
	}{
		{in: "0-3", want: []int{0, 1, 2, 3}},
		{in: "0,2,5", want: []int{0, 2, 5}},
		{in: "5,0-2,2", want: []int{0, 1, 2, 5}},
		{in: "7", want: []int{7}},
		{in: "", bad: true},
		{in: "-1", bad: true},
		{in: "a-b", bad: true},
		{in: "0-99999999", bad: true},
	}
	for _, tc := range tests {
		got, err := parseEpochs(tc.in)
		if (err != nil) != tc.bad || !slices.Equal(got, tc.want) {
			t.Errorf("parseEpochs(%q) = %v, %v; want %v (bad=%v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "0G", want: 0},
		{in: "512B", want: 512},
		{in: "512", bad: true}, // bytes or gigabytes? a size has its unit
		{in: "100", bad: true},
		{in: "0.5", bad: true},
		{in: "1.5", bad: true},
		{in: "0.5B", bad: true},  // not a whole byte
		{in: "1.5B", bad: true},  // nor this
		{in: "1e-9K", bad: true}, // less than a byte
		{in: "0.5K", want: 512},  // a whole number of bytes once scaled
		{in: "512iB", bad: true}, // iB goes with a multiple
		{in: "NaNG", bad: true},
		{in: "64K", want: 64 << 10},
		{in: "1.5G", want: 3 << 29},
		{in: "2TiB", want: 2 << 40},
		{in: "10gb", want: 10 << 30},
		{in: "-1G", bad: true},
		{in: "G", bad: true},
		{in: "99999P", bad: true},
	}
	for _, tc := range tests {
		got, err := parseBytes(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d (bad=%v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.Contains(out, "decoders:") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
	code, out, stderr := runCLI(t, "version", "--json")
	var v map[string]string
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v["version"] != version || v["decoders"] == "" || v["go"] == "" {
		t.Fatalf("version --json: exit %d, %v: %s%s", code, err, out, stderr)
	}
}

func TestPipelines(t *testing.T) {
	code, out, _ := runCLI(t, "pipelines")
	for _, want := range []string{"ops joined by '|'", "random_resized_crop(size=H[,W],scale=0.08:1,ratio=0.75:1.3333)",
		"hflip(p=0.5)", "normalize(mean=0.485,0.456,0.406,std=0.229,0.224,0.225)", "imagenet-train", "imagenet-val"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("pipelines: exit %d, output lacks %q:\n%s", code, want, out)
		}
	}
	code, out, _ = runCLI(t, "pipelines", "hflip|center_crop(size=32)|normalize")
	if code != 0 || !strings.Contains(out, "float32 [3 32 32] [C H W], 12288 bytes") ||
		!strings.Contains(out, "hflip(p=0.5)|center_crop(size=32)|normalize(") {
		t.Errorf("pipelines TEXT: exit %d:\n%s", code, out)
	}
}

func TestTopologyJSON(t *testing.T) {
	code, out, stderr := runCLI(t, "topology", "--json", "--workers", "3")
	if code != 0 {
		t.Fatalf("topology: exit %d: %s", code, stderr)
	}
	var v struct {
		Topology  map[string]any `json:"topology"`
		Placement map[string]any `json:"placement"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Topology == nil || v.Placement == nil {
		t.Fatalf("topology --json: %v: %s", err, out)
	}
}

// smallData makes a generated ImageFolder dataset and, optionally, one
// undecodable file in it.
func smallData(t *testing.T, n int, corrupt bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if err := bench.GenerateDataset(dir, n, 2, 3); err != nil {
		t.Fatal(err)
	}
	if corrupt {
		entries, _ := os.ReadDir(dir)
		bad := filepath.Join(dir, entries[0].Name(), "zz-corrupt.jpg")
		if err := os.WriteFile(bad, []byte("\xff\xd8\xff\xe0 this is not a JPEG"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestScan(t *testing.T) {
	code, out, _ := runCLI(t, "scan", smallData(t, 12, false))
	if code != 0 || !strings.Contains(out, "0 undecodable") {
		t.Fatalf("scan of a clean dataset: exit %d, %q", code, out)
	}
	data := smallData(t, 12, true)
	code, out, _ = runCLI(t, "scan", "--json", data)
	if code != exitFound || !strings.Contains(out, "zz-corrupt.jpg") {
		t.Fatalf("scan of a dataset with a corrupt file: exit %d, %q", code, out)
	}
	// Files of other formats are not samples, and scan says so, by extension.
	entries, _ := os.ReadDir(data)
	for _, name := range []string{"notes.txt", "scan.tiff", "more.txt"} {
		if err := os.WriteFile(filepath.Join(data, entries[1].Name(), name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, _ = runCLI(t, "scan", data)
	if code != exitFound || !strings.Contains(out, "skipped 3 files whose extension is not an image format loaderd decodes: .tiff 1, .txt 2") {
		t.Fatalf("scan with skipped files: exit %d, %q", code, out)
	}
	code, out, _ = runCLI(t, "scan", "--json", "--decoder", "go", data)
	var rep struct {
		Samples int            `json:"samples"`
		Decoder string         `json:"decoder"`
		Skipped map[string]int `json:"skipped"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFound {
		t.Fatalf("scan --json: exit %d, %v: %q", code, err, out)
	}
	if rep.Samples != 13 || rep.Skipped[".txt"] != 2 || rep.Skipped[".tiff"] != 1 || !strings.HasPrefix(rep.Decoder, "go") {
		t.Errorf("scan --json = %+v", rep)
	}
	if code, _, stderr := runCLI(t, "scan", "--decoder", "nope", data); code != exitUsage || !strings.Contains(stderr, "--decoder") {
		t.Errorf("scan --decoder nope: exit %d, %q", code, stderr)
	}

	// A manifest naming missing files: scan lists each (unreadable, with
	// its line) beside the other samples and exits 3; serve and precompute
	// refuse it (exit 2), pointing to scan.
	manifest := filepath.Join(data, "list.tsv")
	entries, _ = os.ReadDir(data)
	good, _ := os.ReadDir(filepath.Join(data, entries[0].Name()))
	body := entries[0].Name() + "/" + good[0].Name() + "\t0\ngone-1.jpg\t1\n" + entries[0].Name() + "/zz-corrupt.jpg\t0\ngone-2.png\t0\n"
	if err := os.WriteFile(manifest, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "scan", manifest)
	words := strings.Join(strings.Fields(out), " ")
	if code != exitFound || !strings.Contains(out, "4 samples in 2 classes, 1 undecodable") || !strings.Contains(out, "2 could not be read") ||
		!strings.Contains(words, "1 gone-1.jpg unreadable list.tsv:2: no such file") || !strings.Contains(words, "3 gone-2.png unreadable list.tsv:4: no such file") {
		t.Errorf("scan of a manifest with missing files: exit %d\n%s%s", code, out, stderr)
	}
	code, _, stderr = runCLI(t, "precompute", "--data", "m="+manifest, "--epochs", "0", "--cache-dir", t.TempDir(), "--log-level", "warn")
	if code != exitUsage || !strings.Contains(stderr, "gone-1.jpg: list.tsv:2: no such file; 1 more entry") || !strings.Contains(stderr, "`loaderd scan "+manifest+"` lists every entry") {
		t.Errorf("precompute of a manifest with missing files: exit %d\n%s", code, stderr)
	}
}

// TestScanDecoder: scan checks with the decoders --decoder selects (an
// arithmetic-coded JPEG only libjpeg-turbo decodes), and reports JPEGs with
// corrupt entropy-coded data with either decoder (the stated policy).
func TestScanDecoder(t *testing.T) {
	data := smallData(t, 6, false)
	entries, _ := os.ReadDir(data)
	for _, name := range []string{"jpeg-arithmetic.jpg", "jpeg-corrupt-markers.jpg", "gif-lzw11.gif", "bmp-rle8.bmp", "webp-animated-offset.webp"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "augment", "testdata", "pillow", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(data, entries[0].Name(), name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	scan := func(decoder string) (undecodable []string) {
		t.Helper()
		code, out, stderr := runCLI(t, "scan", "--json", "--decoder", decoder, data)
		var rep struct {
			Samples     int `json:"samples"`
			Undecodable []struct {
				Path   string `json:"path"`
				Reason string `json:"reason"`
			} `json:"undecodable"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFound || rep.Samples != 11 {
			t.Fatalf("scan --decoder %s: exit %d, %v: %s %s", decoder, code, err, out, stderr)
		}
		for _, u := range rep.Undecodable {
			undecodable = append(undecodable, filepath.Base(u.Path)+": "+u.Reason)
		}
		return undecodable
	}
	got := scan("go")
	if len(got) != 2 || !strings.Contains(got[0], "jpeg-arithmetic.jpg: ") || !strings.Contains(got[0], "arithmetic coding") ||
		!strings.Contains(got[1], "jpeg-corrupt-markers.jpg: ") {
		t.Errorf("scan --decoder go: %q", got)
	}
	if _, err := augment.ResolveDecoder("libjpeg-turbo"); err != nil {
		return // libjpeg-turbo not built in
	}
	got = scan("libjpeg-turbo")
	if len(got) != 1 || !strings.Contains(got[0], "jpeg-corrupt-markers.jpg: ") || !strings.Contains(got[0], "Corrupt JPEG data") {
		t.Errorf("scan --decoder libjpeg-turbo: %q", got)
	}
}

const tinyPipeline = "random_resized_crop(size=32,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)"

// TestPrecomputeThenServe runs the user's path: precompute two epochs,
// serve them, stream both over Flight, and shut down on cancel.
func TestPrecomputeThenServe(t *testing.T) {
	data := smallData(t, 40, true)
	cache := t.TempDir()
	code, out, stderr := runCLI(t, "precompute", "--data", "d="+data, "--pipeline", tinyPipeline,
		"--cache-dir", cache, "--epochs", "0-1", "--shard-size", "16", "--workers", "2")
	if code != 0 || !strings.Contains(out, "82 samples computed") { // 2 epochs × 41 samples
		t.Fatalf("precompute: exit %d\n%s\n%s", code, out, stderr)
	}
	// A second run finds everything cached.
	code, out, _ = runCLI(t, "precompute", "--data", "d="+data, "--pipeline", tinyPipeline,
		"--cache-dir", cache, "--epochs", "0-1", "--shard-size", "16")
	if code != 0 || !strings.Contains(out, " 0 samples computed") {
		t.Fatalf("second precompute recomputed: exit %d, %s", code, out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &serveFlags{listen: "127.0.0.1:0", maxStreams: 8, drainTimeout: 5 * time.Second}
	f.data = datasetFlag{{Name: "d", Path: data}}
	f.pipeline, f.decoder, f.onError, f.logLevel = tinyPipeline, "auto", "substitute", "warn"
	f.cacheDir, f.shardSize = cache, 16
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var logs bytes.Buffer
	go func() { done <- serve(ctx, f, newLogger(&logs, "warn"), ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	for epoch := range 2 {
		ff := &fetchFlags{connFlags: connFlags{addr: addr}, clients: 2, repeat: epoch + 1, req: service.Request{Dataset: "d", Epoch: epoch, BatchSize: 8, WorldSize: 1, Shuffle: true}}
		res, err := fetch(ctx, ff, &flightsvc.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// 41 samples over 2 ranks without drop_last: 21 each, one wrapped
		// around; epoch 1 is streamed twice (--repeat 2).
		want := int64(42 * (epoch + 1))
		if res.Images != want || res.Bytes < want*32*32*3 {
			t.Errorf("epoch %d: %d images, %d bytes over 2 ranks; want %d images", epoch, res.Images, res.Bytes, want)
		}
	}
	// The command line, with the loopback limit measured in the same run.
	code, out, stderr = runCLI(t, "fetch", "--addr", addr, "--dataset", "d", "--batch-size", "16", "--json", "--vs-loopback")
	var res fetchResult
	if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil {
		t.Fatalf("fetch --vs-loopback: exit %d, %v\n%s%s", code, err, out, stderr)
	}
	if res.Images != 41 || res.LoopbackGBPerSec <= 0 || res.VsLoopback <= 0 {
		t.Errorf("fetch --vs-loopback = %+v; want 41 images and a loopback figure", res)
	}
	// What the server refuses is a usage error naming the flag (exit 2);
	// start_batch equal to the batch count is an empty stream (SPEC §4).
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{args: []string{"--dataset", "nosuch"}, code: exitUsage, want: `refused the request: dataset "nosuch": not found; it serves: d`},
		{args: []string{"--dataset", "d", "--batch-size", "16", "--start-batch", "4"}, code: exitUsage, want: "--start-batch"},
		{args: []string{"--dataset", "d", "--batch-size", "16", "--start-batch", "3"}, code: exitOK, want: ""},
		{args: []string{"--dataset", "d", "--gpu", "GPU-nonexistent"}, code: exitUsage, want: "--gpu"},
	} {
		args := append([]string{"fetch", "--addr", addr}, tc.args...)
		code, out, stderr := runCLI(t, args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("loaderd %q: exit %d, %s%s; want exit %d mentioning %q", args, code, out, stderr, tc.code, tc.want)
		}
		if tc.code == exitOK && !strings.Contains(out, ": 1 client, 0 batches, 0 images, ") {
			t.Errorf("loaderd %q: %s; want 1 client, 0 batches, 0 images", args, out)
		}
	}
	// --digest: one digest per stream, the same when streamed again, another
	// for another epoch (the Python package's tests compare theirs with it).
	digest := func(epoch string) string {
		t.Helper()
		code, out, stderr := runCLI(t, "fetch", "--addr", addr, "--dataset", "d", "--epoch", epoch, "--batch-size", "16", "--digest", "--json")
		var res fetchResult
		if err := json.Unmarshal([]byte(out), &res); code != 0 || err != nil || len(res.SHA256) != 64 {
			t.Fatalf("fetch --digest: exit %d, %v\n%s%s", code, err, out, stderr)
		}
		return res.SHA256
	}
	if d0, again, d1 := digest("0"), digest("0"), digest("1"); d0 != again || d0 == d1 {
		t.Errorf("fetch --digest: epoch 0 %s, again %s, epoch 1 %s; want the same twice, another for epoch 1", d0, again, d1)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10s of cancel")
	}
}

// TestBenchCommand runs `loaderd bench` end to end on a tiny dataset (no
// peer) and checks it writes the table, the JSON and the plot.
func TestBenchCommand(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runCLI(t, "bench", "--data", smallData(t, 12, false), "--max-images", "12",
		"--repeat", "1", "--max-workers", "1", "--epochs", "2", "--clients", "1,2", "--out", out, "--transfer", "64M")
	if code != 0 {
		t.Fatalf("bench: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"COLD", "PRECOMPUTE", "WARM", "LIMITS", "served/loopback"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("bench table lacks %q:\n%s", want, stdout)
		}
	}
	for _, f := range []string{"bench.txt", "bench.json", "bench.png"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("bench wrote no %s: %v", f, err)
		}
	}
	// The local phase ran against a serve process (this test binary as
	// loaderd): readers, the server's CPU on both paths, the footprint.
	var rep bench.Report
	if b, err := os.ReadFile(filepath.Join(out, "bench.json")); err != nil || json.Unmarshal(b, &rep) != nil || rep.Local == nil {
		t.Fatalf("bench.json without the local phase: %v", err)
	}
	l := rep.Local
	if l.Error != "" || len(l.Readers) != 3 || l.Readers[0].ImagesPerSec <= 0 || l.Flight.ImagesPerSec <= 0 ||
		l.FlightServerCPUPerGB <= 0 || l.Footprint.EpochBytes <= 0 || l.Footprint.PageCacheBytes < l.Footprint.EpochBytes/2 {
		t.Errorf("local phase %+v", l)
	}
	if !strings.Contains(stdout, "LOCAL: same-node readers") {
		t.Errorf("bench table lacks the local section:\n%s", stdout)
	}
}

// TestBenchPeerFails: a peer asked for that cannot run is reported in the
// table and the JSON, and bench exits 1 naming it and the reason.
func TestBenchPeerFails(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runCLI(t, "bench", "--data", smallData(t, 8, false), "--max-images", "8",
		"--repeat", "1", "--max-workers", "1", "--epochs", "2", "--clients", "1", "--out", out,
		"--peer", "dali", "--peer-python", "dali=/nonexistent/python3", "--python", "none", "--transfer", "16M")
	if code != 1 || !strings.Contains(stderr, "dali") || !strings.Contains(stderr, "/nonexistent/python3") {
		t.Fatalf("bench with a broken peer: exit %d, stderr:\n%s\nwant exit 1 naming the peer and its python", code, stderr)
	}
	if !strings.Contains(stdout, "peer dali FAILED") {
		t.Errorf("table lacks the failed peer:\n%s", stdout)
	}
	if b, err := os.ReadFile(filepath.Join(out, "bench.json")); err != nil || !strings.Contains(string(b), `"error"`) {
		t.Errorf("bench.json (%v) lacks the peer's error", err)
	}
}

// TestBudgetAndOtherSeed: precompute keeps the epochs that fit its
// budget and says in human units why the rest does not (exit 1); a run
// under another seed says at start that the cache holds epochs it will not
// read, and which flags would read them.
func TestBudgetAndOtherSeed(t *testing.T) {
	data := smallData(t, 20, false)
	cache := t.TempDir()
	args := []string{"precompute", "--data", "d=" + data, "--pipeline", tinyPipeline, "--cache-dir", cache,
		"--shard-size", "8", "--log-level", "warn", "--epochs", "0-3"}
	code, out, stderr := runCLI(t, append(args, "--cache-budget", "100K")...) // an epoch is ~61 KiB
	if code != exitFailure || !strings.Contains(out, "d: epoch 0:") ||
		!strings.Contains(stderr, "epochs 1-3 of d do not fit") || !strings.Contains(stderr, "KiB") || !strings.Contains(stderr, "(--cache-budget)") {
		t.Fatalf("precompute over budget: exit %d\n%s%s", code, out, stderr)
	}
	fresh := []string{"precompute", "--data", "d=" + data, "--pipeline", tinyPipeline, "--cache-dir", t.TempDir(), "--shard-size", "8", "--epochs", "0-1", "--cache-budget", "10K"}
	if code, out, stderr := runCLI(t, fresh...); code != exitFailure || !strings.Contains(stderr, "epochs 0-1 can be streamed (uncached) but not precomputed; a budget of") ||
		strings.Contains(stderr, "precompute stopped") {
		t.Fatalf("precompute into an empty cache with a budget below one epoch: exit %d\n%s%s", code, out, stderr)
	}
	// A budget smaller than one epoch: nothing can be precomputed; the
	// message says what would hold the epochs asked for, and no progress
	// line of zeros precedes it.
	// (Epoch 0 is cached: the four need four epochs' bytes.)
	code, out, stderr = runCLI(t, append(args, "--cache-budget", "10K", "--log-level", "info")...)
	m := regexp.MustCompile(`takes (\S+ \S+), more than the whole budget of 10 KiB: epochs 1-3 can be streamed \(uncached\) but not precomputed; epoch 0 is cached; a budget of (\S+ \S+) would hold them all`).FindStringSubmatch(stderr)
	if code != exitFailure || m == nil || strings.Contains(stderr, "total=0") {
		t.Fatalf("precompute with a budget below one epoch: exit %d\n%s%s", code, out, stderr)
	}
	epoch, _ := humanize.ParseBytes(m[1])
	all, _ := humanize.ParseBytes(m[2])
	if r := float64(all) / float64(epoch); r < 3.95 || r > 4.05 {
		t.Errorf("a budget of %s (%s an epoch) to hold epochs 0-3; want four epochs'", m[2], m[1])
	}
	code, out, stderr = runCLI(t, args...) // no budget: the rest, under seed 0
	if code != 0 || !strings.Contains(out, "60 samples computed, 20 already cached") {
		t.Fatalf("precompute: exit %d\n%s%s", code, out, stderr)
	}

	// serve under seed 7: a warning at start, and cache-status lists the epochs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &serveFlags{listen: "127.0.0.1:0", maxStreams: 8, drainTimeout: 5 * time.Second}
	f.data = datasetFlag{{Name: "d", Path: data}}
	f.pipeline, f.decoder, f.onError, f.seed, f.cacheDir, f.shardSize = tinyPipeline, "auto", "substitute", 7, cache, 8
	var logs syncBuffer
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- serve(ctx, f, newLogger(&logs, "warn"), ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	for _, want := range []string{"will not read", "epochs=0-3", "seed=0", "to_use_them=\"--seed 0\""} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("serve under seed 7 logged\n%s\nwant %q", logs.String(), want)
		}
	}
	// The README's example of the warning has the keys it has, and a
	// decoder of the form it has ("libjpeg-turbo N.N.N + libwebp N.N.N").
	got, readme := logPairs(logs.String()), readmeWarning(t)
	for k := range got {
		if _, ok := readme[k]; !ok && k != "time" && k != "level" && k != "msg" {
			t.Errorf("the warning has %s=%q; README's example lacks it", k, got[k])
		}
	}
	for k := range readme {
		if _, ok := got[k]; !ok {
			t.Errorf("README's example of the warning has %s=, which the warning does not", k)
		}
	}
	if pl, _ := parsePipeline(tinyPipeline, "auto"); digitsAsN.ReplaceAllString(readme["decoder"], "N") != digitsAsN.ReplaceAllString(pl.Decoder(), "N") {
		t.Errorf("README's example says decoder=%q; the decoders of --decoder auto here are %q", readme["decoder"], pl.Decoder())
	}
	code, out, stderr = runCLI(t, "cache-status", "--addr", addr)
	if code != 0 || !strings.Contains(out, "d        -      none cached") ||
		!strings.Contains(out, "d: epochs 0-3 (") || !strings.Contains(out, "under seed 0, pipeline "+tinyPipeline) {
		t.Errorf("cache-status: exit %d\n%s%s", code, out, stderr)
	}
	code, out, _ = runCLI(t, "cache-status", "--addr", addr, "--dataset", "d", "--json")
	var st service.CacheStatus
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || len(st.Datasets) != 1 || len(st.Datasets[0].Other) != 1 {
		t.Errorf("cache-status --json: exit %d, %v: %s", code, err, out)
	}
	if code, _, stderr := runCLI(t, "cache-status", "--addr", addr, "--dataset", "nosuch"); code != exitUsage || !strings.Contains(stderr, "refused") || !strings.Contains(stderr, "it serves: d") {
		t.Errorf("cache-status of an unknown dataset: exit %d, %s", code, stderr)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHelpSaysWhatSharesTheCache: serve's and precompute's help name every
// flag of a cached epoch's key (those the start-up warning may ask for,
// plus --data) and say that sizes are binary.
func TestHelpSaysWhatSharesTheCache(t *testing.T) {
	pl, err := parsePipeline(tinyPipeline, "auto")
	if err != nil {
		t.Fatal(err)
	}
	f := &pipelineFlags{seed: 1, shardSize: 16}
	other := service.OtherEpochs{Pipeline: "center_crop(size=8)", Decoder: "go (image/jpeg, x/image/webp)", ShardSize: 8, Seed: 2}
	asked := f.matching(pl, other)
	for _, flag := range keyFlags[1:] {
		if !strings.Contains(asked, flag+" ") {
			t.Errorf("matching = %q; want it to name %s", asked, flag)
		}
	}
	for _, cmd := range []string{"serve", "precompute"} {
		_, help, _ := runCLI(t, cmd, "--help")
		text := strings.Join(strings.Fields(help), " ")
		for _, want := range []string{
			"given the same --data, --pipeline, --seed, --decoder and --shard-size",
			"binary units", "700M, 700MB and 700MiB all mean 700 MiB",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("%s --help lacks %q:\n%s", cmd, want, help)
			}
		}
	}
}

// TestDemo: the demo generates its images once, again (with its cache
// emptied) when --images changes, and says so; a --dir another demo uses is
// refused with a hint naming demo's own flag (--dir, not --cache-dir).
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	demo := func(images string) (int, string, string) {
		return runCLI(t, "demo", "--dir", dir, "--images", images, "--listen", "127.0.0.1:0", "--workers", "1")
	}
	images := func(out string, n int) bool {
		return strings.Count(out, fmt.Sprintf(" %d images ", n)) == 3
	}
	code, out, stderr := demo("6")
	if code != 0 || !strings.Contains(out, "generating 6 sample images") || !images(out, 6) {
		t.Fatalf("demo --images 6: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = demo("6")
	if code != 0 || strings.Contains(out, "generating") || !images(out, 6) {
		t.Fatalf("demo --images 6 again: exit %d\n%s%s; want the same images, not generated again", code, out, stderr)
	}
	code, out, stderr = demo("9")
	if code != 0 || !strings.Contains(out, "holds 6 sample images, not --images 9: generating them again") || !images(out, 9) {
		t.Fatalf("demo --images 9 after 6: exit %d\n%s%s; want 9 images, generated again, and said so", code, out, stderr)
	}
	c, err := shardcache.Open(filepath.Join(dir, "cache"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	code, out, stderr = demo("9")
	if code != exitFailure || !strings.Contains(stderr, "give this one another --dir") || strings.Contains(stderr, "--cache-dir") {
		t.Errorf("demo on a --dir in use: exit %d\n%s%s; want exit 1 and another --dir", code, out, stderr)
	}
	if bad := foreignFlags(t, "demo", stderr, nil); len(bad) > 0 {
		t.Errorf("demo's message names %v, which demo does not take: %s", bad, stderr)
	}
}

// TestServeWarnsOfSmallBudget: a --cache-budget smaller than one epoch
// starts, with a warning that every epoch streams uncached and the budget
// that would cache it.
func TestServeWarnsOfSmallBudget(t *testing.T) {
	data := smallData(t, 20, false)
	_, logs, stop := startServeLogged(t, data, t.TempDir(), "127.0.0.1:0", func(f *serveFlags) { f.cacheBudget, f.prefetchEpochs = 10<<10, 1 })
	stop()
	got := logPairs(logs.String())
	if !strings.Contains(logs.String(), "--cache-budget is smaller than one epoch of this dataset: every epoch of it is streamed uncached") ||
		got["dataset"] != "d" || got["cache_budget"] != "10 KiB" || !strings.HasPrefix(got["to_cache_it"], "--cache-budget ") {
		t.Fatalf("serve with a 10 KiB budget logged:\n%s", logs.String())
	}
	epoch, _ := humanize.ParseBytes(got["epoch"])
	want, err := parseBytes(strings.TrimPrefix(got["to_cache_it"], "--cache-budget "))
	if err != nil || want < 2*int64(epoch) {
		t.Errorf("to_cache_it %q for an epoch of %s and --prefetch-epochs 1; want two epochs at least", got["to_cache_it"], got["epoch"])
	}
	for _, tc := range []struct {
		n    int64
		want string
	}{{n: 9, want: "9B"}, {n: 10 << 10, want: "10K"}, {n: 9<<20 + 1, want: "9217K"}, {n: 110<<20 + 1, want: "111M"}, {n: 3 << 40, want: "3072G"}} {
		if got := ceilSize(tc.n); got != tc.want {
			t.Errorf("ceilSize(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
}

// TestClientAddr: the --addr that the hints to evict give is the address
// serve listens on, the port it got for port 0, a loopback address for
// every interface, a unix:// one as given; the default is left out.
func TestClientAddr(t *testing.T) {
	for _, tc := range []struct {
		given string
		lis   net.Addr
		want  string
	}{
		{given: "127.0.0.1:0", lis: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}, want: "127.0.0.1:4242"},
		{given: ":9000", lis: &net.TCPAddr{IP: net.IPv6unspecified, Port: 9000}, want: "127.0.0.1:9000"},
		{given: "0.0.0.0:8815", lis: &net.TCPAddr{IP: net.IPv4zero, Port: 8815}, want: "127.0.0.1:8815"},
		{given: "10.0.0.5:8815", lis: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 8815}, want: "10.0.0.5:8815"},
		{given: "unix:///run/loaderd/l.sock", lis: &net.UnixAddr{Name: "/run/loaderd/l.sock", Net: "unix"}, want: "unix:///run/loaderd/l.sock"},
	} {
		if got := clientAddr(tc.given, tc.lis); got != tc.want {
			t.Errorf("clientAddr(%q, %v) = %q, want %q", tc.given, tc.lis, got, tc.want)
		}
	}
	for addr, want := range map[string]string{
		"":                 "loaderd evict --dataset d --other",
		defaultListen:      "loaderd evict --dataset d --other",
		"10.0.0.5:8815":    "loaderd evict --dataset d --other --addr 10.0.0.5:8815",
		"unix:///r/l.sock": "loaderd evict --dataset d --other --addr unix:///r/l.sock",
	} {
		if got := evictOtherCommand("d", addr); got != want {
			t.Errorf("evictOtherCommand(d, %q) = %q, want %q", addr, got, want)
		}
	}
}
