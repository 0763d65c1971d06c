package loader

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// Epochs this loader will not read. A cache key holds only fingerprints:
// of the dataset's listing, of the pipeline (with the shard size), and the
// seed. Two notes in the cache directory name what the fingerprints stand
// for, so that the epochs cached under another pipeline or seed, or under
// an earlier listing of a served dataset (its files changed since), can be
// told to the user (cache-status's "other", serve's start-up warning),
// evicted first under the budget (shardcache.Cache.Retire) and removed on
// request (EvictOther). The notes only name things: a missing or damaged
// note hides epochs from those lists, it never serves a wrong row.

// pipelinesFile, in the cache directory, names the pipeline of each cache
// key loaderd has written under: the keys hold only fingerprints, and a
// user told "epochs under another pipeline" wants to know which.
const pipelinesFile = "pipelines.json"

// listingsFile, in the cache directory, names the dataset of each listing
// fingerprint loaderd has served: its name and path, and when it was
// listed. An epoch of a fingerprint noted under a served dataset's name and
// path, other than its current listing's, is an earlier listing's.
const listingsFile = "datasets.json"

// pipelineNote is what pipelinesFile says of one cache key's Pipeline.
type pipelineNote struct {
	Pipeline  string `json:"pipeline"` // canonical text
	Decoder   string `json:"decoder"`
	ShardSize int    `json:"shard_size"`
}

// listingNote is what listingsFile says of one dataset fingerprint.
type listingNote struct {
	Dataset string    `json:"dataset"` // the name it was served under
	Path    string    `json:"path"`    // absolute: the ImageFolder root or the manifest
	Listed  time.Time `json:"listed"`  // when the listing was first seen
	Samples int       `json:"samples"`
}

// readNotes reads one of the notes files into v; a missing or damaged file
// leaves v empty (the notes are only for messages and eviction order).
func readNotes[T any](dir, name string) map[string]T {
	notes := map[string]T{}
	if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
		if json.Unmarshal(b, &notes) != nil {
			clear(notes)
		}
	}
	return notes
}

// readPipelines reads pipelinesFile.
func readPipelines(dir string) map[string]pipelineNote {
	return readNotes[pipelineNote](dir, pipelinesFile)
}

// readListings reads listingsFile.
func readListings(dir string) map[string]listingNote {
	return readNotes[listingNote](dir, listingsFile)
}

// writeNotes replaces the notes file name with notes, atomically
// (shardcache.WriteAtomic). The caller holds Loader.notesMu; the cache
// directory's lock keeps other processes out.
func writeNotes[T any](dir, name string, notes map[string]T) error {
	b, err := json.MarshalIndent(notes, "", "  ")
	if err != nil {
		return fmt.Errorf("loader: %s: %w", name, err)
	}
	if err := shardcache.WriteAtomic(filepath.Join(dir, name), b); err != nil {
		return fmt.Errorf("loader: %s: %w", name, err)
	}
	return nil
}

// notePipeline adds this loader's pipeline to pipelinesFile.
func (l *Loader) notePipeline(key string) error {
	l.notesMu.Lock()
	defer l.notesMu.Unlock()
	dir := l.cache.Dir()
	notes := readPipelines(dir)
	note := pipelineNote{Pipeline: l.opts.Pipeline.String(), Decoder: l.opts.Pipeline.Decoder(), ShardSize: l.opts.ShardSize}
	if notes[key] == note {
		return nil
	}
	notes[key] = note
	return writeNotes(dir, pipelinesFile, notes)
}

// noteListings adds the current listing of every served dataset to
// listingsFile, and drops the notes of fingerprints that are neither
// served now nor have epochs in the cache.
func (l *Loader) noteListings() error {
	l.notesMu.Lock()
	defer l.notesMu.Unlock()
	dir := l.cache.Dir()
	notes := readListings(dir)
	keep := map[string]bool{}
	changed := false
	for _, name := range l.names {
		s := l.sets[name]
		d := s.current()
		keep[d.Fingerprint] = true
		if n, ok := notes[d.Fingerprint]; ok && n.Dataset == name && n.Path == s.path {
			continue
		}
		notes[d.Fingerprint] = listingNote{Dataset: name, Path: s.path, Listed: time.Now().UTC().Truncate(time.Second), Samples: d.Len()}
		changed = true
	}
	for _, info := range l.cache.Epochs() {
		keep[info.Key.Dataset] = true
	}
	for fp := range notes {
		if !keep[fp] {
			delete(notes, fp)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return writeNotes(dir, listingsFile, notes)
}

// otherGroup is one group of other epochs and their cache keys.
type otherGroup struct {
	service.OtherEpochs
	keys []shardcache.Key
}

// others returns the epochs the cache holds of the served dataset s that
// this loader will not read, grouped by (listing, pipeline, seed): those of
// its current listing under a pipeline, decoder, shard size or seed other
// than this loader's (typically a precompute run with other flags than
// serve's), then those of its earlier listings (the same name and path,
// another fingerprint: its files changed since), oldest listing first.
func (l *Loader) others(s *served, infos []shardcache.EpochInfo, pipes map[string]pipelineNote, listings map[string]listingNote) []otherGroup {
	d := s.current()
	type group struct {
		dataset, pipeline string
		seed              uint64
	}
	byGroup := map[group]*otherGroup{}
	for _, info := range infos {
		k := info.Key
		if info.Shards == 0 && info.Partial == 0 {
			continue
		}
		earlier := false
		switch n, ok := listings[k.Dataset]; {
		case k.Dataset == d.Fingerprint:
			if k.Pipeline == d.pipeKey && k.Seed == l.opts.Seed {
				continue // this loader's own
			}
		case ok && n.Dataset == s.spec.Name && n.Path == s.path:
			earlier = true
		default:
			continue // another dataset's
		}
		g := group{k.Dataset, k.Pipeline, k.Seed}
		o := byGroup[g]
		if o == nil {
			o = &otherGroup{OtherEpochs: service.OtherEpochs{Seed: k.Seed}}
			if n, ok := pipes[k.Pipeline]; ok {
				o.Pipeline, o.Decoder, o.ShardSize = n.Pipeline, n.Decoder, n.ShardSize
			} else {
				fp, _, _ := strings.Cut(k.Pipeline, "/")
				o.Pipeline = "fingerprint " + fp
			}
			if earlier {
				n := listings[k.Dataset]
				o.Listing, o.Fingerprint, o.Listed, o.Samples = service.ListingEarlier, k.Dataset, n.Listed.Format(time.RFC3339), int64(n.Samples)
			}
			byGroup[g] = o
		}
		o.Epochs = append(o.Epochs, k.Epoch)
		o.Bytes += info.Bytes + info.Writing
		o.keys = append(o.keys, k)
	}
	out := make([]otherGroup, 0, len(byGroup))
	for _, o := range byGroup {
		slices.Sort(o.Epochs)
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b otherGroup) int {
		if c := strings.Compare(a.Listing, b.Listing); c != 0 { // the current listing's ("") first
			return c
		}
		if c := strings.Compare(a.Listed, b.Listed); c != 0 {
			return c
		}
		if c := strings.Compare(a.Pipeline, b.Pipeline); c != 0 {
			return c
		}
		if c := strings.Compare(a.Decoder, b.Decoder); c != 0 {
			return c
		}
		if a.ShardSize != b.ShardSize {
			return a.ShardSize - b.ShardSize
		}
		return cmpUint(a.Seed, b.Seed)
	})
	return out
}

// otherEpochs is others without the keys, for the cache-status action.
func (l *Loader) otherEpochs(s *served, infos []shardcache.EpochInfo, pipes map[string]pipelineNote, listings map[string]listingNote) []service.OtherEpochs {
	var out []service.OtherEpochs
	for _, g := range l.others(s, infos, pipes, listings) {
		out = append(out, g.OtherEpochs)
	}
	return out
}

// OtherEpochs lists the epochs the cache holds of dataset that this loader
// will not read (see others): under another pipeline, decoder, shard size
// or seed, or of an earlier listing of the dataset. serve logs them at
// start; cache-status lists them under "other".
func (l *Loader) OtherEpochs(dataset string) ([]service.OtherEpochs, error) {
	s, ok := l.sets[dataset]
	if !ok {
		return nil, fmt.Errorf("loader: dataset %q: %w", dataset, service.ErrNotFound)
	}
	dir := l.cache.Dir()
	return l.otherEpochs(s, l.cache.Epochs(), readPipelines(dir), readListings(dir)), nil
}

// retireOthers marks every epoch this loader will not read as retired in
// the cache: over budget, those go first (shardcache.Cache.Retire).
func (l *Loader) retireOthers() {
	dir := l.cache.Dir()
	infos, pipes, listings := l.cache.Epochs(), readPipelines(dir), readListings(dir)
	for _, name := range l.names {
		for _, g := range l.others(l.sets[name], infos, pipes, listings) {
			for _, k := range g.keys {
				l.cache.Retire(k)
			}
		}
	}
}

// EvictOther frees the epochs of dataset that this loader will not read
// (OtherEpochs: other pipelines and seeds, earlier listings), with all
// also every epoch it reads (the dataset's whole entry in the cache), and
// returns the cache status (service.Actions), with all its Evicted saying
// what became of each epoch read (as Evict's). Epochs being streamed are
// freed when their streams end.
func (l *Loader) EvictOther(ctx context.Context, dataset string, all bool) (service.CacheStatus, error) {
	s, ok := l.sets[dataset]
	if !ok {
		return service.CacheStatus{}, fmt.Errorf("loader: dataset %q: %w", dataset, service.ErrNotFound)
	}
	var evicted []service.EpochEviction
	if all {
		var mine []int
		for _, st := range l.cacheStatus(false)[dataset] {
			mine = append(mine, st.Epoch)
		}
		if len(mine) > 0 {
			st, err := l.Evict(ctx, dataset, mine)
			if err != nil {
				return service.CacheStatus{}, err
			}
			evicted = st.Evicted
		}
	}
	dir := l.cache.Dir()
	for _, g := range l.others(s, l.cache.Epochs(), readPipelines(dir), readListings(dir)) {
		for _, k := range g.keys {
			what, err := l.cache.Evict(k)
			if err != nil {
				return service.CacheStatus{}, fmt.Errorf("loader: evict epoch %d of an earlier listing or another pipeline of %s: %w", k.Epoch, dataset, err)
			}
			if what != shardcache.NotCached {
				evicted = append(evicted, service.EpochEviction{Dataset: dataset, Epoch: k.Epoch, Result: evictionResult(what), Other: true})
			}
		}
	}
	st, err := l.CacheStatus(ctx, dataset)
	st.Evicted = evicted
	return st, err
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
