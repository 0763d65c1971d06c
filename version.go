// Package loaderd holds what the Go binary and the Python client package
// (python/, import name loaderd) share: the release version. The commands
// live in cmd/loaderd; the packages beside this file do the work.
package loaderd

import (
	_ "embed"
	"strings"
)

// versionFile is the one place the version is written: the Python package
// reads the same file (python/pyproject.toml takes it as its dynamic
// version), so `loaderd version` and `loaderd.__version__` agree.
//
//go:embed python/loaderd/VERSION
var versionFile string

// Version is the release version, e.g. "0.1.0" (PEP 440 and semver alike,
// without a leading "v").
func Version() string { return strings.TrimSpace(versionFile) }
