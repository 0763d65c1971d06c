package docs

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/loaderd/loaderd"

// pkg is what `go list -json` says of one package.
type pkg struct {
	ImportPath string
	Doc        string
	Imports    []string
}

// goList returns the module's packages (tests aside) by path relative to
// the module root, with their imports among them.
func goList(t *testing.T) map[string]pkg {
	t.Helper()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on this machine: %v", err)
	}
	cmd := exec.Command(goCmd, "list", "-json", "./...")
	cmd.Dir = ".."
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		var own []string
		for _, imp := range p.Imports {
			if rel, ok := strings.CutPrefix(imp, module+"/"); ok {
				own = append(own, rel)
			} else if imp == module {
				own = append(own, ".")
			}
		}
		slices.Sort(own)
		p.Imports = own
		if p.ImportPath == module {
			p.ImportPath = "."
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module+"/")] = p
	}
	return pkgs
}

// diagram returns the import diagram of DESIGN.md: the lines of its
// ```imports block, "pkg → imports...".
func diagram(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open("DESIGN.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "```imports":
			in = true
		case in && line == "```":
			return out
		case in:
			from, to, ok := strings.Cut(line, "→")
			from = strings.TrimSpace(from)
			if !ok || from == "" {
				t.Fatalf("DESIGN.md: diagram line %q is not \"pkg → imports\"", line)
			}
			if _, dup := out[from]; dup {
				t.Fatalf("DESIGN.md: %s twice in the diagram", from)
			}
			imps := strings.Fields(to)
			slices.Sort(imps)
			out[from] = imps
		}
	}
	t.Fatal("DESIGN.md has no ```imports block")
	return nil
}

// TestImportDiagram checks DESIGN.md's import diagram against go list:
// every package (this one aside), and exactly its loaderd imports.
func TestImportDiagram(t *testing.T) {
	pkgs := goList(t)
	drawn := diagram(t)
	for path, p := range pkgs {
		if path == "docs" {
			continue
		}
		imps, ok := drawn[path]
		if !ok {
			t.Errorf("DESIGN.md: package %s is missing from the import diagram (it imports %v)", path, p.Imports)
			continue
		}
		if !slices.Equal(imps, p.Imports) {
			t.Errorf("DESIGN.md: %s → %v in the diagram; go list says %v", path, imps, p.Imports)
		}
	}
	for path := range drawn {
		if _, ok := pkgs[path]; !ok {
			t.Errorf("DESIGN.md: the diagram names %s, which go list does not know", path)
		}
	}
	// The contract package stays a leaf, as its doc says.
	if imps := pkgs["service"].Imports; len(imps) != 0 {
		t.Errorf("service imports %v; it must import no loaderd package", imps)
	}
}

// TestPackageList checks that DESIGN.md's package list names every
// package and nothing else, and that every package has a doc comment.
func TestPackageList(t *testing.T) {
	pkgs := goList(t)
	b, err := os.ReadFile("DESIGN.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Packages\n")
	if start < 0 {
		t.Fatal("DESIGN.md has no Packages section")
	}
	section := text[start+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^- `([a-z/]+|\\.)`:").FindAllStringSubmatch(section, -1) {
		listed[m[1]] = true
	}
	for path, p := range pkgs {
		if !listed[path] {
			t.Errorf("DESIGN.md: package %s is missing from the package list", path)
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no doc comment", path)
		}
	}
	for path := range listed {
		if _, ok := pkgs[path]; !ok {
			t.Errorf("DESIGN.md: the package list names %s, which go list does not know", path)
		}
	}
}
