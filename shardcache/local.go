package shardcache

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Readers in other processes (SPEC §9) map the cache's shard files
// themselves. Three things serve them here:
//
//   - File modes. Without Options.Group, directories are made 0755 and
//     files 0644, less the process's umask. With it, every directory of the
//     cache is owned by the group, setgid (new entries inherit the group)
//     and 2750, and every file a reader needs (shards, the token) is 0640.
//   - A token, localDir/tokenName: random bytes written at Open, readable
//     by exactly those who can read the shards. A client that shows it
//     proves it can read the cache.
//   - Leases. A Lease is a directory localDir/<id> of hard links, one per
//     file it was asked to keep: the names a reader is given. While the
//     lease lives, each file stays reachable under its lease name whatever
//     happens to its cache name (a commit's rename, eviction, a corrupt
//     shard's removal: none of them alters or truncates a file; they rename
//     or unlink names). Release unlinks the lease's names; the disk space of
//     a file no other name holds is freed when the last reader unmaps it.
//     A killed process leaves lease directories behind; the next Open
//     removes them.

// ErrNoLocal reports that readers in other processes cannot be served from
// this cache: its file system has no hard links.
var ErrNoLocal = errors.New("shardcache: cache cannot be shared with local readers")

// ErrGroup reports an Options.Group that names no group.
var ErrGroup = errors.New("shardcache: no such group")

const (
	localDir  = "local"
	tokenName = "token"
	leaseMark = "lease-"
)

// perms decides the modes and group of what the cache creates.
type perms struct {
	gid int // -1: none; the umask decides
}

// lookupGroup resolves a group name or numeric id.
func lookupGroup(name string) (int, error) {
	g, err := user.LookupGroup(name)
	if err != nil {
		var uerr user.UnknownGroupError
		if !errors.As(err, &uerr) {
			return 0, err
		}
		if g, err = user.LookupGroupId(name); err != nil {
			return 0, fmt.Errorf("%w: %q", ErrGroup, name)
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("group %q has id %q", name, g.Gid)
	}
	return gid, nil
}

// dir gives an existing directory the cache's group and mode.
func (p perms) dir(path string) error {
	if p.gid < 0 {
		return nil
	}
	if err := os.Chown(path, -1, p.gid); err != nil {
		return err
	}
	return os.Chmod(path, os.ModeSetgid|0o750)
}

// mkdir makes a directory (its parent exists) with the cache's group and
// mode; an existing directory is given them.
func (p perms) mkdir(path string) error {
	if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return p.dir(path)
}

// file gives a file a reader may need the cache's group and mode.
func (p perms) file(f *os.File) error {
	if p.gid < 0 {
		return nil
	}
	if err := f.Chown(-1, p.gid); err != nil {
		return err
	}
	return f.Chmod(0o640)
}

// createTemp creates a new file named prefix + random digits + suffix in
// dir, readable as the cache's files are (os.CreateTemp makes them 0600).
func (p perms) createTemp(dir, prefix, suffix string) (*os.File, error) {
	for range 100 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, prefix+hex.EncodeToString(b[:])+suffix)
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		if err := p.file(f); err != nil {
			_ = f.Close()
			_ = os.Remove(name)
			return nil, err
		}
		return f, nil
	}
	return nil, fmt.Errorf("create temporary file in %s: %w", dir, fs.ErrExist)
}

// share gives the whole cache to the group, when there is one: the cache
// directory, localDir and every epoch directory and shard file found by
// scan. Files of loaderd's own (LOCK, the ticket key) keep their modes.
func (c *Cache) share() error {
	if c.perm.gid < 0 {
		return nil
	}
	if err := c.perm.dir(c.dir); err != nil {
		return err
	}
	for _, ep := range c.epochs {
		if err := c.perm.dir(ep.dir); err != nil {
			return err
		}
		for _, sf := range ep.shards {
			path := filepath.Join(ep.dir, sf.name)
			if err := os.Chown(path, -1, c.perm.gid); err != nil {
				return err
			}
			if err := os.Chmod(path, 0o640); err != nil {
				return err
			}
		}
	}
	return nil
}

// openLocal prepares localDir at Open: it removes the leases a killed
// process left, writes a new token and finds out whether hard links work
// here (c.noLocal says why not).
func (c *Cache) openLocal() error {
	dir := filepath.Join(c.dir, localDir)
	if err := c.perm.mkdir(dir); err != nil {
		return fmt.Errorf("shardcache: open %s: %w", dir, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("shardcache: open %s: %w", dir, err)
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasPrefix(name, leaseMark) || strings.HasSuffix(name, tmpSuffix) {
			c.removeTrash(filepath.Join(dir, name))
		}
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("shardcache: token: %w", err)
	}
	c.token = hex.EncodeToString(b[:])
	f, err := c.perm.createTemp(dir, tokenName+".", tmpSuffix)
	if err != nil {
		return fmt.Errorf("shardcache: token: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(c.token + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("shardcache: token: %w", err)
	}
	// The token is put in place by a hard link, which is what leases need:
	// where links fail, local readers cannot be served.
	final := filepath.Join(dir, tokenName)
	if err := os.Remove(final); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("shardcache: token: %w", err)
	}
	if err := os.Link(tmp, final); err != nil {
		c.noLocal = fmt.Errorf("%w: hard links fail in %s: %w", ErrNoLocal, dir, err)
		c.log.Warn("shardcache: local readers cannot be served", "err", c.noLocal)
		if err := os.Rename(tmp, final); err != nil {
			return fmt.Errorf("shardcache: token: %w", err)
		}
	}
	return nil
}

// LocalToken returns the token readers show to prove they can read the
// cache, and the path of the file holding it (followed by a newline),
// relative to the cache directory, slash-separated. err, wrapping
// ErrNoLocal, says why NewLease cannot work here.
func (c *Cache) LocalToken() (token, path string, err error) {
	return c.token, localDir + "/" + tokenName, c.noLocal
}

// BootID returns the kernel's boot id ("" where it cannot be read): two
// processes with the same one share a kernel, and so a page cache.
func (c *Cache) BootID() string { return c.boot }

// A Lease keeps files of the cache reachable for readers in other
// processes under names of its own, until Release. It is safe for
// concurrent use.
type Lease struct {
	c   *Cache
	dir string // absolute
	rel string // relative to the cache directory, slash-separated

	mu       sync.Mutex        // guards the fields below
	names    map[string]string // by file path given to Link: the name given out
	released bool
}

// NewLease makes an empty lease. It fails with ErrNoLocal when the cache's
// file system has no hard links.
func (c *Cache) NewLease() (*Lease, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case c.noLocal != nil:
		return nil, c.noLocal
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("shardcache: lease: %w", err)
	}
	name := leaseMark + hex.EncodeToString(b[:])
	dir := filepath.Join(c.dir, localDir, name)
	if err := c.perm.mkdir(dir); err != nil {
		return nil, fmt.Errorf("shardcache: lease: %w", err)
	}
	c.m.leases.Inc()
	return &Lease{c: c, dir: dir, rel: localDir + "/" + name, names: map[string]string{}}, nil
}

// Link gives the cache file at path (a committed shard, or a Writer's
// temporary file) a name in the lease and returns it, relative to the cache
// directory and slash-separated. The same path gets the same name. The
// caller makes sure path names the file it means while Link runs (a
// Writer's temporary file is renamed by Commit).
func (l *Lease) Link(path string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if name, ok := l.names[path]; ok {
		return name, nil
	}
	if l.released {
		return "", fmt.Errorf("shardcache: link %s: lease released", path)
	}
	rel, err := filepath.Rel(l.c.dir, path)
	if err != nil || !filepath.IsLocal(rel) || strings.HasPrefix(filepath.ToSlash(rel), localDir+"/") {
		return "", fmt.Errorf("shardcache: link %s: not a file of the cache in %s", path, l.c.dir)
	}
	base := fmt.Sprintf("%d-%s", len(l.names), filepath.Base(path))
	if err := os.Link(path, filepath.Join(l.dir, base)); err != nil {
		return "", fmt.Errorf("shardcache: lease: %w", err)
	}
	name := l.rel + "/" + base
	l.names[path] = name
	return name, nil
}

// Files returns the number of files the lease holds.
func (l *Lease) Files() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.names)
}

// Release unlinks the lease's names. Release is idempotent.
func (l *Lease) Release() {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return
	}
	l.released = true
	l.mu.Unlock()
	l.c.removeTrash(l.dir)
	l.c.m.leases.Dec()
}
