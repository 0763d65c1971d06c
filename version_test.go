package loaderd

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	if v := Version(); !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("Version() = %q, want MAJOR.MINOR.PATCH", v)
	}
}

// TestPythonTakesTheVersionFile checks that the Python package builds its
// version from the file Version embeds, not from a copy of the number.
func TestPythonTakesTheVersionFile(t *testing.T) {
	b, err := os.ReadFile("python/pyproject.toml")
	if err != nil {
		t.Fatal(err)
	}
	toml := string(b)
	for _, want := range []string{`dynamic = ["version"]`, `version = {file = "loaderd/VERSION"}`} {
		if !strings.Contains(toml, want) {
			t.Errorf("python/pyproject.toml lacks %s", want)
		}
	}
	project, _, _ := strings.Cut(toml[strings.Index(toml, "[project]")+1:], "\n[")
	if regexp.MustCompile(`(?m)^version\s*=`).MatchString(project) {
		t.Error("python/pyproject.toml's [project] writes a version of its own")
	}
}
