package epoch

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/shardcache"
)

// ErrOptions reports Options New cannot work with.
var ErrOptions = errors.New("epoch: invalid options")

// Options describe an epoch and what its shards need. Cache, Commits and
// Schema are required; a nil Logger discards.
type Options struct {
	Cache     *shardcache.Cache
	Commits   *Commits     // the loader's registry of commits, shared by its Epochs
	Logger    *slog.Logger // for the shards' warnings; should carry the dataset and epoch
	Key       shardcache.Key
	Schema    *arrow.Schema // of the shard files (arrowio.NewSchema)
	Samples   int           // samples in the epoch; at least 1
	ShardSize int           // rows per shard; at least 1
	Hooks     *Hooks        // nil means none
}

// An Epoch holds the shards of one epoch while something uses it. Shard s
// holds samples [s*ShardSize, min(Samples, (s+1)*ShardSize)) in index
// order. An Epoch is safe for concurrent use; Close it when its last user
// leaves.
type Epoch struct {
	key    shardcache.Key
	size   int // rows per shard
	shards []*Shard

	rmu      sync.Mutex    // guards pending and closed; a leaf, taken under Shard.mu
	pending  int           // shards whose writer batches held at Close
	closed   bool          // Close has run
	released chan struct{} // closed once Close has run and no shard holds its writer
}

// New lays out the shards of an epoch; it touches neither the cache nor the
// disk.
func New(opts *Options) (*Epoch, error) {
	o := *opts
	switch {
	case o.Cache == nil || o.Commits == nil || o.Schema == nil:
		return nil, fmt.Errorf("%w: no cache, commit registry or schema", ErrOptions)
	case o.Samples <= 0 || o.ShardSize <= 0:
		return nil, fmt.Errorf("%w: %d samples in shards of %d", ErrOptions, o.Samples, o.ShardSize)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Hooks == nil {
		o.Hooks = &Hooks{}
	}
	ep := &Epoch{key: o.Key, size: o.ShardSize, released: make(chan struct{})}
	layouts := map[int]*arrowio.ShardLayout{}
	for lo, num := 0, 0; lo < o.Samples; lo, num = lo+o.ShardSize, num+1 {
		rows := min(o.ShardSize, o.Samples-lo)
		lay := layouts[rows]
		if lay == nil {
			var err error
			if lay, err = arrowio.NewShardLayout(o.Schema, rows); err != nil {
				return nil, fmt.Errorf("epoch: shard layout: %w", err)
			}
			layouts[rows] = lay
		}
		ep.shards = append(ep.shards, &Shard{
			id: shardID{o.Key, num}, lo: lo, n: rows, layout: lay, schema: o.Schema,
			cache: o.Cache, commits: o.Commits, hooks: o.Hooks, log: o.Logger, owner: ep,
			changed: make(chan struct{}),
		})
	}
	return ep, nil
}

// Key returns the cache key of the epoch.
func (ep *Epoch) Key() shardcache.Key { return ep.key }

// Shards returns the shards in order; the slice must not be modified.
func (ep *Epoch) Shards() []*Shard { return ep.shards }

// ShardOf returns the shard of sample i and its row there.
func (ep *Epoch) ShardOf(i int) (*Shard, int) {
	sh := ep.shards[i/ep.size]
	return sh, i - sh.lo
}

// Reserved returns the bytes of the cache the epoch's writers hold.
func (ep *Epoch) Reserved() int64 {
	var n int64
	for _, sh := range ep.shards {
		n += sh.reserved()
	}
	return n
}

// Close runs when the epoch's last user leaves, when no row is claimed: it
// releases the mappings and drops the unfinished writers no batch holds
// (the others go when their last batch is released). Complete shards still
// commit.
//
// Released is closed once that is all over: every shard's writer
// committed, kept partial or dropped, so that a new Epoch of the key finds
// the shards' files free.
func (ep *Epoch) Close() {
	for _, sh := range ep.shards {
		sh.close()
	}
	ep.rmu.Lock()
	ep.closed = true
	done := ep.pending == 0
	ep.rmu.Unlock()
	if done {
		close(ep.released)
	}
}

// Released returns a channel closed once Close has run and every shard
// has let go of its writer (see Close).
func (ep *Epoch) Released() <-chan struct{} { return ep.released }

// hold records that a shard's writer outlives Close (batches hold it).
func (ep *Epoch) hold() {
	ep.rmu.Lock()
	ep.pending++
	ep.rmu.Unlock()
}

// letGo records that such a writer is gone.
func (ep *Epoch) letGo() {
	ep.rmu.Lock()
	ep.pending--
	done := ep.closed && ep.pending == 0
	ep.rmu.Unlock()
	if done {
		close(ep.released)
	}
}
