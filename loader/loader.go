package loader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/gpu"
	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/loader/workers"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
	"github.com/loaderd/loaderd/tier"
)

// ErrOptions reports Options New cannot work with. Other errors wrap the
// service ones (ErrNotFound, ErrInvalid, ErrExhausted, ErrDataLoss,
// ErrUnavailable after Close).
var ErrOptions = errors.New("loader: invalid options")

// A Loader is what the Flight service streams from and acts on.
var (
	_ service.Source  = (*Loader)(nil)
	_ service.Actions = (*Loader)(nil)
)

// Error policies for undecodable samples (SPEC §5).
const (
	PolicySubstitute = "substitute"
	PolicyFail       = "fail"
)

// Policies returns the error policies Options.OnError accepts besides "".
func Policies() []string { return []string{PolicySubstitute, PolicyFail} }

// A DatasetSpec names a dataset to serve and where it lives: an ImageFolder
// directory or a manifest file.
type DatasetSpec struct{ Name, Path string }

// Options configure a Loader. Datasets, Pipeline and Cache are required;
// every other zero value means the default.
type Options struct {
	Datasets []DatasetSpec
	Pipeline *augment.Pipeline
	Seed     uint64
	Cache    *shardcache.Cache

	Workers         int           // 0 means runtime.GOMAXPROCS(0)
	ShardSize       int           // rows per shard; 0 means 1024
	PrefetchEpochs  int           // epochs after a streamed one to precompute in Run; 0 means none
	OnError         string        // "" or "substitute", or "fail" (SPEC §5)
	Topology        *gpu.Topology // nil means one pool, no pinning
	Tier            *tier.Store   // the shared tier (--remote-cache); nil means none
	InFlightBatches int           // batches a stream reads ahead; 0 means 2
	// RescanInterval, when not 0, makes Run list every dataset again that
	// often, for file systems whose changes are not notified (NFS and
	// other network file systems). Run watches local ones anyway.
	RescanInterval time.Duration
	Logger         *slog.Logger // nil means discard
	Registerer     prometheus.Registerer
}

// A Loader serves the datasets of its Options. It is safe for concurrent
// use. New starts no goroutine: workers start with the first work and stop
// in Close; background prefetch runs in Run.
type Loader struct {
	opts         Options
	log          *slog.Logger
	pipe         *augment.Pipeline
	cache        *shardcache.Cache
	names        []string
	sets         map[string]*served // by name; each holds its current listing
	placement    gpu.Placement
	met          *metrics
	sched        *workers.Scheduler
	commits      *epoch.Commits // the shard commits of every epoch
	up           *uploads       // uploads to the shared tier (shared.go)
	fetchSlots   chan struct{}  // rows being read from the shared tier for streams: at most maxFetches
	bgFetchSlots chan struct{}  // and for prefetch and precompute: at most maxBgFetches
	wake         chan struct{}  // nudges Run's prefetch loop

	// mu guards the registry of epochs in use below. It is never held
	// together with a shard's lock (loader/epoch/shard.go has the order):
	// an epoch is closed, and its writers' bytes summed, after mu is
	// released. Nor with a served dataset's mu (served.go), which is
	// taken before a listing's dataset.mu; dataset.mu is a leaf.
	mu         sync.Mutex
	epochs     map[epochID]*openEpoch // epochs in use, by their users
	closing    map[epochID]*openEpoch // epochs whose last user left, until a new user finds them Released
	live       map[epochID]int        // streams per epoch
	evicted    map[epochID]bool       // explicitly evicted: not prefetched until streamed
	shapes     map[string]*jobShape   // the job reading each dataset, learned from requests (ranks.go)
	recent     map[string]epochID     // the last epoch streamed of each dataset: prefetch follows it after its streams end too
	prefetched map[prefetchDone]bool  // epochs whose rows of a shape a prefetch filled
	closed     bool                   // Close was called: no new user

	scratch sync.Pool // *[]byte of RowBytes: rows are rendered here, then written to their shard

	notesMu sync.Mutex // serialises the rewrites of the cache directory's notes (other.go); a leaf

	readFault atomic.Pointer[func(path string) error] // tests: Dataset.fault of every listing
	noNotify  bool                                    // tests: Run watches no directory, as on NFS

	beforeCloseWait func(old *openEpoch) // tests: runs before a new user of an epoch waits for old, closing, to be Released
}

// dataset is one listing of a served dataset (a snapshot: served.go) and
// what the loader learns about its files. Requests hold the listing they
// started with; a changed dataset gets a new one.
type dataset struct {
	*Dataset
	pipeKey string // pipeline fingerprint + shard size: the cache key's Pipeline

	sizeOnce sync.Once
	size     int64 // bytes of an epoch's shards (epochBytes)

	mu    sync.Mutex                  // guards files and errs; a leaf lock
	files []uint8                     // fileUnknown, fileGood or fileBad, by index
	errs  map[int]service.SampleError // undecodable samples found, by index
}

// epochID names an epoch of a listing of a dataset: the listings of one
// name that have the same fingerprint share their epochs.
type epochID struct {
	set   string // the dataset's name
	fp    string // the listing's fingerprint
	epoch int
}

// idOf names epoch e of d.
func idOf(d *dataset, e int) epochID { return epochID{d.Name, d.Fingerprint, e} }

// New lists the datasets and prepares the loader; it starts no goroutine.
func New(ctx context.Context, opts *Options) (*Loader, error) {
	if opts == nil {
		return nil, fmt.Errorf("%w: nil", ErrOptions)
	}
	o := *opts
	switch {
	case o.Pipeline == nil:
		return nil, fmt.Errorf("%w: no pipeline", ErrOptions)
	case o.Cache == nil:
		return nil, fmt.Errorf("%w: no cache", ErrOptions)
	case len(o.Datasets) == 0:
		return nil, fmt.Errorf("%w: no dataset", ErrOptions)
	case o.OnError != "" && !slices.Contains(Policies(), o.OnError):
		return nil, fmt.Errorf("%w: on-error %q (want %s)", ErrOptions, o.OnError, strings.Join(Policies(), " or "))
	case o.Workers < 0 || o.ShardSize < 0 || o.PrefetchEpochs < 0 || o.InFlightBatches < 0 || o.RescanInterval < 0:
		return nil, fmt.Errorf("%w: negative count", ErrOptions)
	}
	if o.OnError == "" {
		o.OnError = PolicySubstitute
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.ShardSize == 0 {
		o.ShardSize = 1024
	}
	if o.InFlightBatches == 0 {
		o.InFlightBatches = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o.Datasets = append([]DatasetSpec(nil), o.Datasets...)
	met, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	l := &Loader{
		opts:         o,
		log:          o.Logger,
		pipe:         o.Pipeline,
		cache:        o.Cache,
		sets:         map[string]*served{},
		met:          met,
		commits:      epoch.NewCommits(),
		up:           newUploads(),
		fetchSlots:   make(chan struct{}, maxFetches),
		bgFetchSlots: make(chan struct{}, maxBgFetches),
		wake:         make(chan struct{}, 1),
		epochs:       map[epochID]*openEpoch{},
		closing:      map[epochID]*openEpoch{},
		live:         map[epochID]int{},
		evicted:      map[epochID]bool{},
		shapes:       map[string]*jobShape{},
		recent:       map[string]epochID{},
		prefetched:   map[prefetchDone]bool{},
	}
	pipeKey := o.Pipeline.Fingerprint() + "/s" + strconv.Itoa(o.ShardSize)
	for _, spec := range o.Datasets {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, dup := l.sets[spec.Name]; dup || spec.Name == "" {
			return nil, fmt.Errorf("%w: dataset name %q empty or repeated", ErrOptions, spec.Name)
		}
		s, err := l.serve(spec, pipeKey)
		if err != nil {
			return nil, err
		}
		l.names = append(l.names, spec.Name)
		l.sets[spec.Name] = s
	}
	if err := l.notePipeline(pipeKey); err != nil {
		return nil, err
	}
	if err := l.noteListings(); err != nil {
		return nil, err
	}
	l.retireOthers()
	l.placement = gpu.Place(o.Topology, o.Workers)
	l.sched = workers.New(l.placement, o.Workers, o.Topology != nil, l.log)
	return l, nil
}

// Run does the loader's background work until ctx is done: it precomputes
// the epochs after those being streamed (Options.PrefetchEpochs) and
// watches the served datasets for changes (Options.RescanInterval). It
// returns nil once ctx is done and everything it started has stopped.
func (l *Loader) Run(ctx context.Context) error {
	var g errgroup.Group
	g.Go(func() error { return l.prefetch(ctx) })
	g.Go(func() error { return l.watch(ctx) })
	return g.Wait()
}

// Close stops the workers and waits for them; it releases no cache entry
// and does not close the Cache. Streams still running fail.
func (l *Loader) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.sched.Stop()
	l.commits.Wait()
	l.up.stop(uploadGrace)
	l.met.set.Unregister()
	return nil
}

// Dataset returns the current listing of a served dataset.
func (l *Loader) Dataset(name string) (*Dataset, bool) {
	s, ok := l.sets[name]
	if !ok {
		return nil, false
	}
	return s.current().Dataset, true
}

// setReadFault makes fault (tests) run before every read of a sample file,
// in the current listings and the later ones.
func (l *Loader) setReadFault(fault func(path string) error) {
	l.readFault.Store(&fault)
	for _, s := range l.sets {
		s.current().fault = fault
	}
}

// lookup returns the current listing of a served dataset, or an error
// wrapping service.ErrNotFound.
func (l *Loader) lookup(name string) (*dataset, error) {
	s, ok := l.sets[name]
	if !ok {
		return nil, fmt.Errorf("loader: dataset %q: %w", name, service.ErrNotFound)
	}
	return s.current(), nil
}

// key is the cache key of an epoch of d.
func (l *Loader) key(d *dataset, e int) shardcache.Key {
	return shardcache.Key{Dataset: d.Fingerprint, Pipeline: d.pipeKey, Seed: l.opts.Seed, Epoch: e}
}

// schema is the schema of epoch e of d, for streams and shard files alike.
func (l *Loader) schema(d *dataset, e int) (*arrow.Schema, error) {
	spec := arrowio.RowSpec{Shape: l.pipe.Shape(), DimNames: l.pipe.DimNames(), Float32: l.pipe.Float32()}
	return arrowio.NewSchema(spec, map[string]string{
		"loaderd.dataset":             d.Name,
		"loaderd.dataset_fingerprint": d.Fingerprint,
		"loaderd.pipeline":            l.pipe.String(),
		"loaderd.seed":                strconv.FormatUint(l.opts.Seed, 10),
		"loaderd.epoch":               strconv.Itoa(e),
	})
}

// Datasets lists the served datasets (service.Source).
func (l *Loader) Datasets(ctx context.Context) ([]service.DatasetInfo, error) {
	status := l.cacheStatus(false)
	var out []service.DatasetInfo
	for _, name := range l.names {
		d := l.sets[name].current()
		s, err := l.schema(d, 0)
		if err != nil {
			return nil, err
		}
		info := service.DatasetInfo{
			Name:         name,
			Samples:      int64(d.Len()),
			Classes:      append([]string(nil), d.Classes...),
			Pipeline:     l.pipe.String(),
			Seed:         l.opts.Seed,
			CachedEpochs: []int{},
			Schema:       s,
			Fingerprint:  d.Fingerprint,
		}
		for _, st := range status[name] {
			if st.State == service.EpochComplete {
				info.CachedEpochs = append(info.CachedEpochs, st.Epoch)
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// Plan validates req and describes its stream (service.Source).
func (l *Loader) Plan(ctx context.Context, req service.Request) (service.Plan, error) {
	d, o, _, err := l.resolve(req)
	if err != nil {
		return service.Plan{}, err
	}
	if req.Transport == service.TransportLocal {
		if err := l.checkLocal(d); err != nil {
			return service.Plan{}, err
		}
	}
	s, err := l.schema(d, req.Epoch)
	if err != nil {
		return service.Plan{}, err
	}
	return service.Plan{Schema: s, Records: o.Records(), Batches: int64(o.Batches()), Fingerprint: d.Fingerprint}, nil
}

// resolve checks req: its dataset, order and GPU; it returns the current
// listing of the dataset, the order and the pool serving it. A request
// bound to a fingerprint (a ticket's) that the dataset no longer has is
// an error wrapping service.ErrStale.
func (l *Loader) resolve(req service.Request) (*dataset, *Order, int, error) {
	d, err := l.lookup(req.Dataset)
	if err != nil {
		return nil, nil, 0, err
	}
	if req.Fingerprint != "" && req.Fingerprint != d.Fingerprint {
		return nil, nil, 0, fmt.Errorf("loader: dataset %q changed since the request was planned (listed again: %d samples): %w", d.Name, d.Len(), service.ErrStale)
	}
	o, err := NewOrder(d.Len(), l.opts.Seed, req)
	if err != nil {
		return nil, nil, 0, err
	}
	pool := l.placement.PoolFor(-1)
	if req.GPU != "" {
		if l.opts.Topology == nil {
			return nil, nil, 0, &service.FieldError{Field: "gpu", Reason: fmt.Sprintf("no GPU %q on this node", req.GPU)}
		}
		dev, err := l.opts.Topology.FindGPU(req.GPU)
		if err != nil {
			return nil, nil, 0, &service.FieldError{Field: "gpu", Reason: err.Error()}
		}
		pool = l.placement.PoolFor(dev)
	}
	return d, o, pool, nil
}
