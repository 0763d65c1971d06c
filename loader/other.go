package loader

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// pipelinesFile, in the cache directory, names the pipeline of each cache
// key loaderd has written under: the keys hold only fingerprints, and a
// user told "epochs under another pipeline" wants to know which.
const pipelinesFile = "pipelines.json"

// pipelineNote is what pipelinesFile says of one cache key's Pipeline.
type pipelineNote struct {
	Pipeline  string `json:"pipeline"` // canonical text
	Decoder   string `json:"decoder"`
	ShardSize int    `json:"shard_size"`
}

// readPipelines reads pipelinesFile; a missing or damaged file is empty.
func readPipelines(dir string) map[string]pipelineNote {
	notes := map[string]pipelineNote{}
	b, err := os.ReadFile(filepath.Join(dir, pipelinesFile))
	if err == nil {
		_ = json.Unmarshal(b, &notes) // damaged: the notes are only for messages
	}
	return notes
}

// notePipeline adds this loader's pipeline to pipelinesFile, atomically
// (a temporary file renamed over it). The cache directory's lock keeps a
// second process from writing it at the same time.
func (l *Loader) notePipeline(key string) error {
	dir := l.cache.Dir()
	notes := readPipelines(dir)
	note := pipelineNote{Pipeline: l.opts.Pipeline.String(), Decoder: l.opts.Pipeline.Decoder(), ShardSize: l.opts.ShardSize}
	if notes[key] == note {
		return nil
	}
	notes[key] = note
	b, err := json.MarshalIndent(notes, "", "  ")
	if err != nil {
		return fmt.Errorf("loader: %s: %w", pipelinesFile, err)
	}
	f, err := os.CreateTemp(dir, pipelinesFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("loader: %s: %w", pipelinesFile, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, pipelinesFile))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("loader: %s: %w", pipelinesFile, err)
	}
	return nil
}

// OtherEpochs lists the epochs the cache holds of dataset (by its
// fingerprint) under a pipeline, decoder, shard size or seed other than
// this loader's, grouped by (pipeline, seed): work this loader will never
// read, typically a precompute run with other flags than serve's. The
// groups are sorted by pipeline text, then seed.
func (l *Loader) OtherEpochs(dataset string) ([]service.OtherEpochs, error) {
	d, err := l.lookup(dataset)
	if err != nil {
		return nil, err
	}
	return l.otherEpochs(d, l.cache.Epochs(), readPipelines(l.cache.Dir())), nil
}

func (l *Loader) otherEpochs(d *dataset, infos []shardcache.EpochInfo, notes map[string]pipelineNote) []service.OtherEpochs {
	type group struct {
		pipeline string
		seed     uint64
	}
	byGroup := map[group]*service.OtherEpochs{}
	for _, info := range infos {
		k := info.Key
		if k.Dataset != d.Fingerprint || (k.Pipeline == d.pipeKey && k.Seed == l.opts.Seed) || info.Shards == 0 {
			continue
		}
		g := group{k.Pipeline, k.Seed}
		o := byGroup[g]
		if o == nil {
			o = &service.OtherEpochs{Seed: k.Seed}
			if n, ok := notes[k.Pipeline]; ok {
				o.Pipeline, o.Decoder, o.ShardSize = n.Pipeline, n.Decoder, n.ShardSize
			} else {
				fp, _, _ := strings.Cut(k.Pipeline, "/")
				o.Pipeline = "fingerprint " + fp
			}
			byGroup[g] = o
		}
		o.Epochs = append(o.Epochs, k.Epoch)
		o.Bytes += info.Bytes
	}
	out := make([]service.OtherEpochs, 0, len(byGroup))
	for _, o := range byGroup {
		slices.Sort(o.Epochs)
		out = append(out, *o)
	}
	slices.SortFunc(out, func(a, b service.OtherEpochs) int {
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

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
