package loader

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loaderd/loaderd/service"
)

// Datasets that change while the loader runs (SPEC §4). A served dataset
// holds its current listing (a *dataset); a request takes the listing
// current when it starts and keeps it to its end, and a rescan that finds
// another fingerprint swaps in a new listing for the requests after it.
// Each listing is immutable; what the loader learns of a file (decodable
// or not) is carried from one listing to the next while the file's path,
// size and mtime stay the same. A request on an older listing reads only
// files that still match it (read.go), so nothing computed from a file's
// new bytes is stored under the old fingerprint, whose cache entries it
// alone can reach.

// served is a dataset the loader serves: where it lives and its current
// listing.
type served struct {
	spec    DatasetSpec
	path    string // spec.Path made absolute: with the name, what makes it the same dataset across listings (other.go)
	pipeKey string

	cur atomic.Pointer[dataset] // the listing new requests see

	mu      sync.Mutex // serialises relistings; guards the fields below; taken before a listing's dataset.mu
	listed  time.Time  // when cur was last confirmed against the disk
	lastErr error      // the last relisting's failure, nil once one succeeds
	dirs    []string   // the directories the watcher should watch (watch.go)
}

// serve lists the dataset of spec for the first time.
func (l *Loader) serve(spec DatasetSpec, pipeKey string) (*served, error) {
	s := &served{spec: spec, pipeKey: pipeKey}
	s.path, _ = filepath.Abs(spec.Path) // OpenDataset fails for a path Abs cannot make
	d, err := OpenDataset(spec.Name, spec.Path)
	if err != nil {
		return nil, err
	}
	s.cur.Store(l.snapshot(d, pipeKey, nil))
	s.listed, s.dirs = time.Now(), d.dirs
	return s, nil
}

// current returns the listing new requests see.
func (s *served) current() *dataset { return s.cur.Load() }

// snapshot wraps the listing d for the loader, carrying over from prev
// (nil for none) what is known of each file whose path, size and mtime
// are unchanged.
func (l *Loader) snapshot(d *Dataset, pipeKey string, prev *dataset) *dataset {
	if f := l.readFault.Load(); f != nil {
		d.fault = *f
	}
	next := &dataset{Dataset: d, pipeKey: pipeKey, files: make([]uint8, d.Len()), errs: map[int]service.SampleError{}}
	if prev == nil {
		return next
	}
	prev.mu.Lock()
	defer prev.mu.Unlock()
	for j, i := range sameFiles(prev.Dataset, d) {
		if i < 0 {
			continue
		}
		next.files[j] = prev.files[i]
		if e, ok := prev.errs[i]; ok {
			e.Index = int64(j)
			next.errs[j] = e
		}
	}
	return next
}

// sameFiles returns, for each sample j of next, the index of the sample of
// prev with the same path, size and mtime, or -1.
func sameFiles(prev, next *Dataset) []int {
	byPath := func(d *Dataset) []int {
		idx := make([]int, d.Len())
		for i := range idx {
			idx[i] = i
		}
		// An ImageFolder listing is in path order already: pdqsort sees it.
		slices.SortStableFunc(idx, func(a, b int) int { return strings.Compare(d.Samples[a].Path, d.Samples[b].Path) })
		return idx
	}
	out := make([]int, next.Len())
	for j := range out {
		out[j] = -1
	}
	pi, ni := byPath(prev), byPath(next)
	for a, b := 0, 0; a < len(pi) && b < len(ni); {
		p, n := prev.Samples[pi[a]], next.Samples[ni[b]]
		switch c := strings.Compare(p.Path, n.Path); {
		case c < 0:
			a++
		case c > 0:
			b++
		default:
			if p.Size == n.Size && p.ModTime == n.ModTime {
				out[ni[b]] = pi[a]
			}
			a++
			b++
		}
	}
	return out
}

// relist lists dataset s again and, when its fingerprint changed, makes
// the new listing current. A listing that fails (the root gone, no
// sample left) keeps the current one: its requests fail on the files they
// cannot read. It reports whether the listing changed.
func (l *Loader) relist(s *served, why string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, err := OpenDataset(s.spec.Name, s.spec.Path)
	if err != nil {
		if s.lastErr == nil || s.lastErr.Error() != err.Error() {
			l.log.Warn("loader: dataset cannot be listed again; serving the last listing", "dataset", s.spec.Name, "why", why, "err", err)
		}
		s.lastErr = err
		return false, err
	}
	s.lastErr, s.listed, s.dirs = nil, time.Now(), d.dirs
	old := s.current()
	if d.Fingerprint == old.Fingerprint {
		return false, nil
	}
	s.cur.Store(l.snapshot(d, s.pipeKey, old))
	l.met.datasetChanges.Inc()
	l.log.Info("loader: dataset changed; new requests see the new listing", "dataset", s.spec.Name, "why", why,
		"samples", d.Len(), "was", old.Len(), "fingerprint", d.Fingerprint)
	// The old listing's epochs are no longer read: noted as an earlier
	// listing's, so that cache-status shows them, the budget evicts them
	// first and the evict action's "other" removes them.
	if err := l.noteListings(); err != nil {
		l.log.Warn("loader: cannot note the new listing in the cache directory; cache-status will not list the old listing's epochs", "dataset", s.spec.Name, "err", err)
	}
	l.retireOthers()
	return true, nil
}

// Rescan lists a dataset again, or every served dataset when dataset is
// "" (service.Actions), and reports each one's listing: new requests see
// it from now on; tickets planned against an older one are refused.
func (l *Loader) Rescan(ctx context.Context, dataset string) (service.RescanResult, error) {
	names := l.names
	if dataset != "" {
		if _, err := l.lookup(dataset); err != nil {
			return service.RescanResult{}, err
		}
		names = []string{dataset}
	}
	out := service.RescanResult{Datasets: []service.DatasetListing{}}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		s := l.sets[name]
		changed, err := l.relist(s, "rescan action")
		if err != nil {
			// FailedPrecondition: the files are not in a state to list.
			return out, fmt.Errorf("loader: rescan %s (the last listing is still served): %w: %w", name, err, service.ErrStale)
		}
		d := s.current()
		out.Datasets = append(out.Datasets, service.DatasetListing{
			Dataset: name, Samples: int64(d.Len()), Classes: len(d.Classes), Fingerprint: d.Fingerprint, Changed: changed,
		})
	}
	return out, nil
}
