package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// guaranteeRef is one test a row of the README's Guarantees table names:
// `dir: TestName` (a Go test, fuzz target or example in that directory's
// _test.go files), `python: test_name` (python/tests) or `.ci/run: what`.
var guaranteeRef = regexp.MustCompile("`([^`:]+): ([^`]+)`")

// TestGuaranteesNameRealTests keeps the README's Guarantees table honest:
// every SPEC section has a row, and every test a row names exists, so a
// renamed or deleted test cannot leave a promise proved by nothing.
func TestGuaranteesNameRealTests(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Guarantees\n")
	if !ok {
		t.Fatal("README.md has no ## Guarantees section")
	}
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	sections := map[string]bool{}
	rows := 0
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 5 || strings.TrimSpace(cells[1]) == "§" || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		rows++
		sections[strings.TrimSpace(cells[1])] = true
		refs := guaranteeRef.FindAllStringSubmatch(cells[3], -1)
		if len(refs) == 0 {
			t.Errorf("row %q names no test", strings.TrimSpace(cells[2]))
		}
		for _, r := range refs {
			if err := findTest(r[1], r[2]); err != "" {
				t.Errorf("row %q: %s", strings.TrimSpace(cells[2]), err)
			}
		}
	}
	for s := 1; s <= 9; s++ {
		if !sections[strings.TrimSpace(string(rune('0'+s)))] {
			t.Errorf("no row for SPEC §%d", s)
		}
	}
	if rows < 20 {
		t.Errorf("the Guarantees table has %d rows; it lost some", rows)
	}
}

// findTest returns "" when the test where names exists, else why not.
func findTest(where, name string) string {
	name = strings.TrimSpace(name)
	switch where {
	case ".ci/run":
		return "" // a CI step, in words
	case "python":
		files, _ := filepath.Glob("../python/tests/*.py")
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err == nil && regexp.MustCompile(`(?m)^def `+regexp.QuoteMeta(name)+`\(`).Match(b) {
				return ""
			}
		}
		return "no python test " + name
	}
	test := strings.Fields(name)[0] // "TestSoak (-long: ...)" names TestSoak
	files, _ := filepath.Glob(filepath.Join("..", where, "*_test.go"))
	if len(files) == 0 {
		return "no Go tests in " + where
	}
	decl := regexp.MustCompile(`(?m)^func ` + regexp.QuoteMeta(test) + `\(`)
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && decl.Match(b) {
			return ""
		}
	}
	return "no " + test + " in " + where
}
