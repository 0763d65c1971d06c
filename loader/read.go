package loader

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/loaderd/loaderd/service"
)

// Reading a sample's file (SPEC §4, §5). A file that cannot be read is not
// undecodable: the read is retried a few times, then fails with a
// *ReadError (service.ErrUnreadable), and nothing is marked bad. A file whose
// size or modification time differs from the listing's, before or after
// the read, or that is gone, belongs to a changed dataset: a *ChangedError
// (service.ErrStale), so that no row computed from a file's new bytes is
// stored or served under the listing's fingerprint.

// readAttempts bounds the reads of a file that fails; between attempts the
// reader waits readBackoff, doubled each time (10, 20, 40 ms: a brief
// shortage of descriptors or an NFS hiccup passes, a missing disk does not
// hold a worker long).
const (
	readAttempts = 4
	readBackoff  = 10 * time.Millisecond
)

// A ReadError reports a sample file that could not be read, after
// retries: permission denied, an I/O error, too many open files. It wraps
// service.ErrUnreadable and the last attempt's error.
type ReadError struct {
	Path     string // the file, relative to the dataset root
	Index    int
	Attempts int
	Err      error
}

func (e *ReadError) Error() string {
	return fmt.Sprintf("loader: cannot read %s (sample %d, %d attempts): %v", e.Path, e.Index, e.Attempts, e.Err)
}

// Unwrap makes errors.Is hold for service.ErrUnreadable and the cause.
func (e *ReadError) Unwrap() []error { return []error{service.ErrUnreadable, e.Err} }

// A ChangedError reports a sample file that changed or vanished since the
// dataset was listed. It wraps service.ErrStale.
type ChangedError struct {
	Path   string // the file, relative to the dataset root
	Index  int
	Reason string // "size 1200 → 1300", "modified", "vanished"
}

func (e *ChangedError) Error() string {
	return fmt.Sprintf("loader: %s (sample %d) changed since the dataset was listed (%s)", e.Path, e.Index, e.Reason)
}

// Unwrap makes errors.Is(err, service.ErrStale) hold.
func (e *ChangedError) Unwrap() error { return service.ErrStale }

// ReadFile returns the bytes of sample i's file as the listing describes
// it. Errors are a *ChangedError or a *ReadError.
func (d *Dataset) ReadFile(i int) ([]byte, error) {
	wait := readBackoff
	var err error
	for attempt := 1; ; attempt++ {
		var b []byte
		b, err = d.readOnce(i)
		var ce *ChangedError
		if err == nil || errors.As(err, &ce) {
			return b, err
		}
		if attempt == readAttempts {
			break
		}
		time.Sleep(wait)
		wait *= 2
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &ChangedError{Path: d.Samples[i].Path, Index: i, Reason: "vanished"}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err // the path is the ReadError's
	}
	return nil, &ReadError{Path: d.Samples[i].Path, Index: i, Attempts: readAttempts, Err: err}
}

// readOnce reads sample i's file once, checking it against the listing
// before and after: a rewrite in place during the read moves its mtime.
func (d *Dataset) readOnce(i int) ([]byte, error) {
	name := d.File(i)
	if d.fault != nil {
		if err := d.fault(name); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := d.unchanged(i, st); err != nil {
		return nil, err
	}
	b := make([]byte, st.Size())
	if _, err := io.ReadFull(f, b); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, &ChangedError{Path: d.Samples[i].Path, Index: i, Reason: "shorter than listed"}
		}
		return nil, err
	}
	if st, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := d.unchanged(i, st); err != nil {
		return nil, err
	}
	return b, nil
}

// unchanged checks a file's size and mtime against sample i's listing.
func (d *Dataset) unchanged(i int, st fs.FileInfo) error {
	s := d.Samples[i]
	switch {
	case !st.Mode().IsRegular():
		return &ChangedError{Path: s.Path, Index: i, Reason: "no longer a regular file"}
	case st.Size() != s.Size:
		return &ChangedError{Path: s.Path, Index: i, Reason: fmt.Sprintf("size %d → %d", s.Size, st.Size())}
	case st.ModTime().UnixNano() != s.ModTime:
		return &ChangedError{Path: s.Path, Index: i, Reason: "modified"}
	}
	return nil
}
