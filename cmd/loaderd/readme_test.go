package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	flagName  = regexp.MustCompile(`--[a-z][a-z0-9-]*`)
	helpFlag  = regexp.MustCompile(`(?m)^\s+(--[a-z][a-z0-9-]*)`)
	firstCell = regexp.MustCompile("^\\| `([^`]*)`")
)

// readmeFlags reads the README's "Commands and flags" section: for each
// command row, the flags it names, plus the dataset-flag table's flags when
// the row says "the dataset flags".
func readmeFlags(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "### Commands and flags\n")
	if !ok {
		t.Fatal(`README.md has no "### Commands and flags" section`)
	}
	if i := strings.Index(sec, "\n#"); i >= 0 {
		sec = sec[:i]
	}
	rows := map[string]string{}
	var shared []string
	for line := range strings.SplitSeq(sec, "\n") {
		m := firstCell.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if strings.HasPrefix(m[1], "--") {
			shared = append(shared, flagName.FindString(m[1]))
			continue
		}
		name, _, _ := strings.Cut(m[1], " ")
		rows[name] = line
	}
	out := map[string][]string{}
	for name, line := range rows {
		flags := flagName.FindAllString(line, -1)
		if strings.Contains(line, "the dataset flags") {
			flags = append(flags, shared...)
		}
		slices.Sort(flags)
		out[name] = slices.Compact(flags)
	}
	return out
}

// TestReadmeMatchesHelp keeps the README's command table and --help in
// step: every command has a row, every flag of every command appears in
// its row, and no row names a flag the command does not have.
func TestReadmeMatchesHelp(t *testing.T) {
	readme := readmeFlags(t)
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
		code, help, _ := runCLI(t, c.name, "--help")
		if code != 0 {
			t.Fatalf("%s --help: exit %d", c.name, code)
		}
		var flags []string
		for _, m := range helpFlag.FindAllStringSubmatch(help, -1) {
			flags = append(flags, m[1])
		}
		slices.Sort(flags)
		got, ok := readme[c.name]
		if !ok {
			t.Errorf("README's command table has no row for %s", c.name)
			continue
		}
		for _, f := range flags {
			if !slices.Contains(got, f) {
				t.Errorf("README: %s takes %s, the table does not say so", c.name, f)
			}
		}
		for _, f := range got {
			if !slices.Contains(flags, f) {
				t.Errorf("README: the table gives %s the flag %s, which `loaderd %s --help` does not list", c.name, f, c.name)
			}
		}
	}
	for name := range readme {
		if !slices.Contains(names, name) {
			t.Errorf("README's command table has a row for %q, which is no command", name)
		}
	}
}

// logPair matches key=value or key="quoted value" in a slog text line.
var logPair = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)

// logPairs returns the key=value pairs of slog text lines.
func logPairs(text string) map[string]string {
	out := map[string]string{}
	for _, m := range logPair.FindAllStringSubmatch(text, -1) {
		out[m[1]] = strings.Trim(m[2], `"`)
	}
	return out
}

// readmeWarning returns the README's example of the start-up warning about
// epochs a run will not read.
func readmeWarning(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), "```\nlevel=WARN msg=\"the cache holds epochs of this dataset that this run will not read\"")
	block, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatal("README.md has no example of the warning about epochs a run will not read")
	}
	return logPairs(block)
}

// digitsAsN stands for a version's numbers, for comparing shapes.
var digitsAsN = regexp.MustCompile(`[0-9]+`)
