package tier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// dirBackend keeps objects as files under a directory every node mounts
// (NFS, Lustre, GPFS, CephFS). A put writes a temporary file beside its
// target, syncs it and renames it into place, so the object appears whole
// or not at all, on any file system whose rename is atomic.
type dirBackend struct{ root string }

// tmpMark is in the names of temporary files; they start with a dot, so
// listings skip them.
const tmpMark = ".tmp-"

func openDir(root string) (*dirBackend, error) {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("tier: %w", err)
	}
	return &dirBackend{root: root}, nil
}

func (d *dirBackend) String() string { return "directory " + d.root }

func (d *dirBackend) path(name string) string { return filepath.Join(d.root, filepath.FromSlash(name)) }

func (d *dirBackend) put(ctx context.Context, name string, r io.Reader, size int64) error {
	final := d.path(name)
	dir := filepath.Dir(final)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tier: put %s: %w", name, err)
	}
	f, err := createTemp(dir, "."+filepath.Base(final)+tmpMark)
	if err != nil {
		return fmt.Errorf("tier: put %s: %w", name, err)
	}
	tmp := f.Name()
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err == nil && n != size {
		err = fmt.Errorf("wrote %d bytes, want %d", n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("tier: put %s: %w", name, err)
	}
	return nil
}

func (d *dirBackend) get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(d.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrMissing, name)
	} else if err != nil {
		return nil, fmt.Errorf("tier: get %s: %w", name, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("tier: get %s: %w", name, err)
	}
	if n < 0 {
		n = fi.Size() - off
	}
	if off < 0 || n < 0 || off+n > fi.Size() {
		f.Close()
		return nil, fmt.Errorf("tier: get %s: range [%d, %d) outside its %d bytes", name, off, off+n, fi.Size())
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, off, n), f}, nil
}

func (d *dirBackend) list(ctx context.Context, dir string) ([]object, error) {
	entries, err := os.ReadDir(d.path(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("tier: list %s: %w", dir, err)
	}
	var out []object
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // gone since ReadDir
		}
		out = append(out, object{name: e.Name(), size: fi.Size()})
	}
	return out, ctx.Err()
}

// ctxReader stops a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// createTemp creates a new file named prefix + random digits in dir, mode
// 0666 less the umask, as the objects of a shared directory must be
// readable by the nodes' other users (os.CreateTemp makes files 0600: a
// node run as another user could read none of them).
func createTemp(dir, prefix string) (*os.File, error) {
	for range 100 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(filepath.Join(dir, prefix+hex.EncodeToString(b[:])), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("no unused temporary name for %s* in %s", prefix, dir)
}
