package tier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loaderd/loaderd/shardcache"
)

// Errors of the tier, wrapped with %w and some context.
var (
	// ErrURL reports a --remote-cache value Open cannot use.
	ErrURL = errors.New("tier: bad remote cache URL")
	// ErrCorrupt reports bytes that failed their checksum on arrival, or
	// an index that does not parse; the caller computes the rows instead.
	ErrCorrupt = errors.New("tier: corrupt object")
	// ErrMissing reports an object that is not in the tier.
	ErrMissing = errors.New("tier: no such object")
)

// Options configure Open. The zero value is a valid configuration.
type Options struct {
	Logger     *slog.Logger          // nil means discard
	Registerer prometheus.Registerer // nil disables metrics
	// ListInterval is how long a listing of an epoch is trusted before
	// Epoch.Inventory lists it again; 0 means 10 s.
	ListInterval time.Duration
	// MergeGap is the largest gap, in bytes, between two wanted rows of an
	// object that ReadRows reads through rather than making two requests;
	// 0 means one row's bytes.
	MergeGap int64
}

// A Store is the shared tier behind one --remote-cache URL. It is safe for
// concurrent use.
type Store struct {
	b      backend
	prefix string // "" or "a/b/": object names start with it
	url    string // the URL as given, for messages (it holds no credentials)
	opts   Options
	log    *slog.Logger
	met    *metrics

	mu     sync.Mutex        // guards epochs
	epochs map[string]*Epoch // by shardcache.Key.Name

	indexWait func() // tests: runs before a caller waits for another's read of an index
}

// A backend stores objects by name ("a/b/c", slash-separated).
type backend interface {
	// put stores size bytes read from r as name; the object becomes
	// visible whole, or not at all.
	put(ctx context.Context, name string, r io.Reader, size int64) error
	// get returns the bytes [off, off+n) of name, or from off to its end
	// when n < 0. A missing object is an error wrapping ErrMissing.
	get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error)
	// list returns the objects directly under dir ("a/b/": names without
	// a slash after the prefix), with their sizes.
	list(ctx context.Context, dir string) ([]object, error)
	// String describes where the objects live, without credentials.
	String() string
}

// object is a listed object.
type object struct {
	name string // relative to the listed directory
	size int64
}

// Open opens the tier at rawURL: s3://BUCKET[/PREFIX] (endpoint and
// credentials from the AWS environment, see the package doc) or
// file:///PATH (a directory, created if absent). It checks that the bucket
// or directory is reachable. Credentials in the URL itself are refused.
func Open(ctx context.Context, rawURL string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ListInterval == 0 {
		o.ListInterval = 10 * time.Second
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url's own message repeats the URL, which may hold a secret.
		return nil, fmt.Errorf("%w: not a URL; want s3://BUCKET/PREFIX or file:///PATH", ErrURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in the URL are refused: give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", ErrURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%w: %s://%s%s: no query or fragment allowed", ErrURL, u.Scheme, u.Host, u.Path)
	}
	s := &Store{opts: o, log: o.Logger, epochs: map[string]*Epoch{}}
	switch u.Scheme {
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("%w: %q names no bucket; want s3://BUCKET/PREFIX", ErrURL, rawURL)
		}
		s.b, err = openS3(ctx, u.Host)
		s.prefix = cleanPrefix(u.Path)
		s.url = "s3://" + u.Host + "/" + s.prefix
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("%w: %q: a file URL names a local path, file:///PATH", ErrURL, rawURL)
		}
		if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("%w: %q: want an absolute path, file:///PATH", ErrURL, rawURL)
		}
		s.b, err = openDir(path.Clean(u.Path))
		s.url = "file://" + path.Clean(u.Path)
	default:
		return nil, fmt.Errorf("%w: scheme %q; want s3://BUCKET/PREFIX or file:///PATH", ErrURL, u.Scheme)
	}
	if err != nil {
		return nil, err
	}
	if s.met, err = newMetrics(o.Registerer); err != nil {
		return nil, err
	}
	return s, nil
}

// cleanPrefix turns a URL path into an object-name prefix: "" or "a/b/".
func cleanPrefix(p string) string {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// String returns the tier's URL and where its objects live, without
// credentials.
func (s *Store) String() string { return s.url + " (" + s.b.String() + ")" }

// URL returns the URL the tier was opened with.
func (s *Store) URL() string { return s.url }

// Close unregisters the tier's metrics.
func (s *Store) Close() error {
	s.met.set.Unregister()
	return nil
}

// Epoch returns the tier's handle on epoch k.
func (s *Store) Epoch(k shardcache.Key) *Epoch {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := k.Name()
	ep := s.epochs[name]
	if ep == nil {
		ep = &Epoch{s: s, key: k, dir: s.prefix + name + "/", idx: map[string]*idxLoad{}}
		s.epochs[name] = ep
	}
	return ep
}

// get reads [off, off+n) of the object name (n < 0: to its end) into
// memory, counting the request and its bytes.
func (s *Store) get(ctx context.Context, name string, off, n int64) ([]byte, error) {
	rc, err := s.b.get(ctx, name, off, n)
	if err != nil {
		s.met.request("get", err)
		return nil, err
	}
	defer rc.Close()
	var b []byte
	if n >= 0 {
		b = make([]byte, n)
		_, err = io.ReadFull(rc, b)
	} else {
		b, err = io.ReadAll(rc)
	}
	s.met.request("get", err)
	s.met.downloaded.Add(float64(len(b)))
	if err != nil {
		return nil, fmt.Errorf("tier: read %s: %w", name, err)
	}
	return b, nil
}

// put stores b as the object name.
func (s *Store) put(ctx context.Context, name string, r io.Reader, size int64) error {
	err := s.b.put(ctx, name, r, size)
	s.met.request("put", err)
	if err == nil {
		s.met.uploaded.Add(float64(size))
	}
	return err
}
