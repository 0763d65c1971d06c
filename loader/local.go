package loader

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// A Loader serves readers on its host too (SPEC §9).
var _ service.LocalSource = (*Loader)(nil)

// Local describes the cache for readers on this host (service.LocalSource).
func (l *Loader) Local() (service.LocalInfo, error) {
	token, file, err := l.cache.LocalToken()
	if err != nil {
		return service.LocalInfo{}, fmt.Errorf("loader: %w: %w", service.ErrNoLocal, err)
	}
	return service.LocalInfo{CacheDir: l.cache.Dir(), TokenFile: file, Token: token, BootID: l.cache.BootID()}, nil
}

// checkLocal reports why d's epochs cannot be streamed as plans, if they
// cannot: an epoch larger than the whole cache budget is never cached.
func (l *Loader) checkLocal(d *dataset) error {
	if b := l.cache.Budget(); b > 0 && l.epochBytes(d) > b {
		return fmt.Errorf("loader: %w: an epoch of %q (%d bytes) is larger than the cache budget (%d bytes) and is streamed uncached",
			service.ErrNoLocal, d.Name, l.epochBytes(d), b)
	}
	if _, _, err := l.cache.LocalToken(); err != nil {
		return fmt.Errorf("loader: %w: %w", service.ErrNoLocal, err)
	}
	return nil
}

// StreamPlans sends the batches of req as plans (service.LocalSource): the
// same rows, in the same order, as Stream, produced the same way, each
// named by the file that holds it once it is written. Every file is linked
// into a lease of the stream (shardcache.Lease) before its row is named, so
// a plan may name a shard still being written, and a file's name outlives
// its commit, eviction or removal as corrupt until release. The epoch stays
// in use (pinned in the cache) until release too. release is returned with
// an error too (a stream that failed midway, its reader gone), once the
// lease exists; the caller calls it when the reader is done.
func (l *Loader) StreamPlans(ctx context.Context, req service.Request, send func(*service.PlanBatch) error) (func(), error) {
	d, o, pool, err := l.resolve(req)
	if err != nil {
		return nil, err
	}
	if err := l.checkLocal(d); err != nil {
		return nil, err
	}
	lease, err := l.cache.NewLease()
	if errors.Is(err, shardcache.ErrNoLocal) {
		return nil, fmt.Errorf("loader: %w: %w", service.ErrNoLocal, err)
	} else if err != nil {
		return nil, fmt.Errorf("loader: %w", err)
	}
	ep, releaseEpoch, err := l.acquire(d, req.Epoch, workStream)
	if err != nil {
		lease.Release()
		return nil, err
	}
	release := sync.OnceFunc(func() {
		lease.Release()
		releaseEpoch()
	})
	err = l.pipeline(ctx, ep, o, pool, func(g *gathered) error {
		plan, err := l.plan(lease, g)
		g.Release() // the lease holds the files now
		if err != nil {
			return err
		}
		return send(plan)
	})
	// On an error too: the reader may still read the plans sent before it.
	return release, err
}

// plan links the files of g's rows into lease and names them.
func (l *Loader) plan(lease *shardcache.Lease, g *gathered) (*service.PlanBatch, error) {
	n := g.Rows()
	p := &service.PlanBatch{Index: g.Index, Label: g.Label, File: make([]string, n), Row: g.Row, Offset: g.Offset}
	for r, f := range g.File {
		if r > 0 && f == g.File[r-1] {
			p.File[r] = p.File[r-1]
			continue
		}
		if f == "" || !filepath.IsAbs(f) {
			return nil, fmt.Errorf("loader: row %d of a plan has no file", r)
		}
		name, err := lease.Link(f)
		if err != nil {
			return nil, fmt.Errorf("loader: %w", err)
		}
		p.File[r] = name
	}
	return p, nil
}
