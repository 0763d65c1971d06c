package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestMain lets the test binary be loaderd itself: run with
// LOADERD_TEST_MAIN=1, it runs the command line in its arguments instead
// of the tests. The deploy scripts and the multi-node test start it as a
// separate process that way, without building another binary.
func TestMain(m *testing.M) {
	if os.Getenv("LOADERD_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// asLoaderd returns the environment that makes this test binary loaderd.
func asLoaderd() []string { return append(os.Environ(), "LOADERD_TEST_MAIN=1") }

// TestSystemdUnit: systemd itself checks deploy/systemd/loaderd.service
// (`systemd-analyze verify`: syntax, known keys, executable), and every flag
// of its ExecStart is one `loaderd serve` takes.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../deploy/systemd/loaderd.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec0 string
	for line := range strings.SplitSeq(string(unit), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec0 = v
		}
	}
	args := strings.Fields(exec0)
	if len(args) < 2 || args[1] != "serve" {
		t.Fatalf("ExecStart=%s; want /path/loaderd serve ...", exec0)
	}
	var f serveFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	f.register(fs)
	for _, a := range args[2:] {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || fs.Lookup(name) == nil {
			t.Errorf("ExecStart argument %q: loaderd serve takes no such flag", a)
		}
	}
	// Every ${VAR} it uses is set by the environment file (or systemd).
	env, err := os.ReadFile("../../deploy/systemd/loaderd.env")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{"CACHE_DIRECTORY": true}
	sc := bufio.NewScanner(strings.NewReader(string(env)))
	for sc.Scan() {
		if k, _, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
			set[k] = true
		}
	}
	for _, a := range args {
		if _, v, ok := strings.Cut(a, "${"); ok {
			name, _, _ := strings.Cut(v, "}")
			if !set[name] {
				t.Errorf("ExecStart uses ${%s}, which loaderd.env does not set", name)
			}
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze on this machine: the unit's syntax is unchecked")
	}
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// verify wants the executable to exist: point it at this binary.
	text := strings.Replace(string(unit), "ExecStart=/usr/local/bin/loaderd", "ExecStart="+self, 1)
	path := filepath.Join(dir, "loaderd.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	// Warnings about the machine's own units are not ours.
	var ours []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "loaderd.service") {
			ours = append(ours, line)
		}
	}
	if err != nil || len(ours) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSlurmScript runs deploy/slurm/precompute.sbatch as Slurm would run
// its array tasks (the SLURM_ARRAY_* variables), with this binary as
// loaderd, into a directory tier: the tasks together leave the shards of
// one machine's precompute.
func TestSlurmScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash on this machine")
	}
	data := smallData(t, 20, false)
	common := []string{"--pipeline", tinyPipeline, "--shard-size", "4", "--log-level", "warn"}
	ref := t.TempDir()
	if code, out, stderr := runCLI(t, append([]string{"precompute", "--data", "d=" + data, "--epochs", "0-1", "--cache-dir", ref}, common...)...); code != 0 {
		t.Fatalf("reference precompute: exit %d\n%s%s", code, out, stderr)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tierDir := filepath.Join(t.TempDir(), "tier")
	for _, k := range []string{"2", "0", "1"} {
		cmd := exec.Command(bash, "../../deploy/slurm/precompute.sbatch")
		cmd.Env = append(asLoaderd(),
			"SLURM_ARRAY_TASK_ID="+k, "SLURM_ARRAY_TASK_COUNT=3", "SLURM_ARRAY_TASK_MIN=0", "SLURM_ARRAY_JOB_ID=42",
			"SLURM_CPUS_PER_TASK=2", "TMPDIR="+t.TempDir(),
			"LOADERD="+self, "REMOTE_CACHE=file://"+tierDir, "DATA=d="+data, "EPOCHS=0-1",
			"LOADERD_ARGS="+strings.Join(common, " "))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("array task %s: %v\n%s", k, err, out)
		}
	}
	sameShards(t, shardFiles(t, tierDir), shardFiles(t, ref))

	// Outside an array job it says so.
	cmd := exec.Command(bash, "../../deploy/slurm/precompute.sbatch")
	cmd.Env = append(os.Environ(), "REMOTE_CACHE=file:///nonexistent", "DATA=d=/nonexistent", "SLURM_ARRAY_TASK_ID=", "SLURM_ARRAY_TASK_COUNT=")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "not a Slurm array task") {
		t.Errorf("outside Slurm: %v, %s", err, out)
	}
}
