package shardcache

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// modeOf returns the permission bits (with setgid) and group of path.
func modeOf(t *testing.T, path string) (fs.FileMode, int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode() & (fs.ModePerm | fs.ModeSetgid), int(fi.Sys().(*syscall.Stat_t).Gid)
}

func TestFileModesFollowUmask(t *testing.T) {
	old := syscall.Umask(0o027)
	defer syscall.Umask(old)
	dir := t.TempDir()
	c := openCache(t, dir, nil)
	k := testKey(0)
	if err := writeShard(c, k, 0, shardSize(0)); err != nil {
		t.Fatal(err)
	}
	shard := filepath.Join(dir, filesUnder(t, dir, ".arrow")[0])
	_, tokenPath, _ := c.LocalToken()
	for _, tc := range []struct {
		path string
		want fs.FileMode
	}{
		{path: shard, want: 0o640},
		{path: filepath.Dir(shard), want: 0o750},
		{path: filepath.Join(dir, filepath.FromSlash(tokenPath)), want: 0o640},
		{path: filepath.Join(dir, localDir), want: 0o750},
	} {
		if got, _ := modeOf(t, tc.path); got != tc.want {
			t.Errorf("%s: mode %v, want %v (0666/0777 less the umask 027)", tc.path, got, tc.want)
		}
	}
}

func TestGroup(t *testing.T) {
	dir := t.TempDir()
	// An entry made before the cache was given to a group.
	c := openCache(t, dir, nil)
	k := testKey(0)
	if err := writeShard(c, k, 0, shardSize(0)); err != nil {
		t.Fatal(err)
	}
	c.Close()

	gid := os.Getgid() // a group this user may give files to
	c = openCache(t, dir, &Options{Group: strconv.Itoa(gid)})
	if err := writeShard(c, k, 1, shardSize(1)); err != nil {
		t.Fatal(err)
	}
	l, err := c.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	_, tokenPath, _ := c.LocalToken()
	want := map[string]fs.FileMode{dir: fs.ModeSetgid | 0o750, filepath.Join(dir, localDir): fs.ModeSetgid | 0o750,
		l.dir: fs.ModeSetgid | 0o750, filepath.Join(dir, filepath.FromSlash(tokenPath)): 0o640}
	for _, rel := range filesUnder(t, dir, "shard-") {
		p := filepath.Join(dir, rel)
		want[p] = 0o640
		want[filepath.Dir(p)] = fs.ModeSetgid | 0o750
	}
	if len(want) != 7 {
		t.Fatalf("files: %v", want)
	}
	for p, w := range want {
		if got, g := modeOf(t, p); got != w || g != gid {
			t.Errorf("%s: mode %v group %d, want %v group %d", p, got, g, w, gid)
		}
	}
	c.Close()

	if _, err := Open(t.TempDir(), &Options{Group: "no-such-group-loaderd"}); err == nil || !strings.Contains(err.Error(), "no-such-group-loaderd") {
		t.Errorf("Open with an unknown group = %v, want an error naming it", err)
	}
}

func TestLeaseOutlivesCacheNames(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, nil)
	k := testKey(2)
	size := shardSize(0)
	want := pattern(k, 0, size)
	if err := writeShard(c, k, 0, size); err != nil {
		t.Fatal(err)
	}
	m, err := c.Open(k, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	name, err := l.Link(m.Path())
	if err != nil {
		t.Fatal(err)
	}
	m.Release()
	if again, err := l.Link(m.Path()); err != nil || again != name {
		t.Errorf("second Link = %q, %v; want %q", again, err, name)
	}
	if !strings.HasPrefix(name, "local/lease-") || !filepath.IsLocal(name) {
		t.Errorf("lease name %q: want a path under local/", name)
	}
	if got := testutil.ToFloat64(c.m.leases); got != 1 {
		t.Errorf("loaderd_cache_leases = %v, want 1", got)
	}

	// A shard being written: linked under its temporary name, then
	// committed (renamed); the lease name shows the final bytes.
	w, err := c.Create(k, 1, shardSize(1), prepareSkeleton)
	if err != nil {
		t.Fatal(err)
	}
	half := pattern(k, 1, shardSize(1))
	copy(w.Data(), half[:len(half)/2])
	tmpName, err := l.Link(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	copy(w.Data()[len(half)/2:], half[len(half)/2:])
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	// Eviction unlinks the cache's names; the lease's stay, bytes intact.
	if _, err := c.Evict(k); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, k.dirName())); !os.IsNotExist(err) {
		t.Fatalf("epoch directory after Evict: %v, want gone", err)
	}
	for n, w := range map[string][]byte{name: want, tmpName: half} {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(n)))
		if err != nil || !bytes.Equal(b, w) {
			t.Errorf("%s after eviction: %d bytes, %v; want the shard's %d bytes", n, len(b), err, len(w))
		}
	}
	l.Release()
	l.Release()
	if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(name))); !os.IsNotExist(err) {
		t.Errorf("lease name after Release: %v, want gone", err)
	}
	if got := testutil.ToFloat64(c.m.leases); got != 0 {
		t.Errorf("loaderd_cache_leases after Release = %v, want 0", got)
	}
	if _, err := l.Link(filepath.Join(dir, "meta.json")); err == nil {
		t.Error("Link after Release = nil error")
	}
}

func TestLeaseRefusesOutsidePaths(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, nil)
	l, err := c.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	outside := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, tokenPath, _ := c.LocalToken()
	for _, p := range []string{outside, filepath.Join(dir, "..", "x"), filepath.Join(dir, filepath.FromSlash(tokenPath))} {
		if name, err := l.Link(p); err == nil {
			t.Errorf("Link(%s) = %q, want an error", p, name)
		}
	}
}

// A lease's hard link changes the file's ctime; that must not make the
// next Open checksum the shard again.
func TestLeaseKeepsVerification(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, nil)
	k := testKey(0)
	if err := writeShard(c, k, 0, shardSize(0)); err != nil {
		t.Fatal(err)
	}
	m, err := c.Open(k, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Link(m.Path()); err != nil {
		t.Fatal(err)
	}
	m.Release()
	l.Release()
	before := testutil.ToFloat64(c.m.checksums)
	m, err = c.Open(k, 0)
	if err != nil {
		t.Fatal(err)
	}
	m.Release()
	if got := testutil.ToFloat64(c.m.checksums); got != before {
		t.Errorf("checksums %v → %v: a lease made Open verify the shard again", before, got)
	}
}

func TestStaleLeasesRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	c := openCache(t, dir, nil)
	tok1, _, _ := c.LocalToken()
	l, err := c.NewLease()
	if err != nil {
		t.Fatal(err)
	}
	stale := l.dir
	c.Close() // a killed process never releases
	c = openCache(t, dir, nil)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("lease directory of the last process: %v, want removed", err)
	}
	tok2, path, err := c.LocalToken()
	if err != nil {
		t.Fatalf("LocalToken: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(path)))
	if err != nil || strings.TrimSpace(string(b)) != tok2 || tok2 == tok1 || len(tok2) != 64 {
		t.Errorf("token file %q (%v), token %q, last %q: want a new 64-digit token in the file", b, err, tok2, tok1)
	}
}
