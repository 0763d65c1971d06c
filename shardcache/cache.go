package shardcache

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Errors returned by a Cache, wrapped with %w and some context.
var (
	ErrMiss    = errors.New("shardcache: shard not cached")
	ErrCorrupt = errors.New("shardcache: shard corrupt")
	ErrBudget  = errors.New("shardcache: cache budget exceeded")
	ErrClosed  = errors.New("shardcache: cache closed")
	ErrLocked  = errors.New("shardcache: cache directory in use by another process")
)

// Options configure a Cache. The zero value is a valid configuration.
type Options struct {
	Budget     int64                 // bytes on disk, committed plus in progress; 0 means unlimited
	Group      string                // the group (name or numeric id) that may read the cache; "" means the umask decides (see local.go)
	Logger     *slog.Logger          // nil means discard
	Registerer prometheus.Registerer // nil disables metrics
	// MaxOpenWriters bounds the writers that keep their file descriptor
	// open between writes; the others open their file for each write (see
	// Writer.WriteAt). 0 means a quarter of the soft RLIMIT_NOFILE at Open,
	// at least 4: a cold shuffled stream writes nearly every shard of its
	// epoch at once, thousands of files over small shards.
	MaxOpenWriters int
}

// EpochInfo describes one epoch entry on disk.
type EpochInfo struct {
	Key     Key
	Shards  int   // committed shards
	Partial int   // partial shards on disk, suspended (partial.go)
	Bytes   int64 // bytes of the committed shards and the suspended partial ones
	// Writing is the bytes reserved by the shards of the epoch being
	// written: each its full size, on disk and in the budget (Usage) from
	// its first row. Bytes + Writing is what the epoch takes now.
	Writing  int64
	Pinned   bool // a live stream needs it
	Evicting bool // Evict was called while pinned; freed when the last pin goes
	Retired  bool // Retire was called and the epoch not used since: evicted first
	LastUsed time.Time
}

const (
	lockName    = "LOCK"
	trashPrefix = ".trash-"
)

// A Cache is an on-disk store of shards, one process at a time per
// directory. It is safe for concurrent use.
//
// Locks: Cache.mu guards the in-memory state only and is never held across
// I/O, so Has, Open's lookup, Usage and Epochs never wait for a disk. The
// changes to an epoch directory's names (its creation, a commit's rename, a
// corrupt shard's removal) are serialised by that epoch's fs lock, taken
// before Cache.mu, never under it. verified.log has a lock of its own,
// vmu, a leaf. An evicted epoch's directory is renamed aside after Cache.mu
// is released; until then its path is in moving, and a new entry for the
// same key waits for the rename before creating the directory again.
type Cache struct {
	dir  string
	opts Options
	log  *slog.Logger
	m    *metrics
	lock *os.File // holds the flock on dir/LOCK
	boot string   // the kernel's boot id; "" keeps the memo in memory only (set by Open)
	perm perms    // modes and group of what the cache creates
	// Set by Open, read-only after: see local.go.
	token   string // shown by local readers
	noLocal error  // why local readers cannot be served, or nil

	mu        sync.Mutex               // guards the fields below; no I/O under it
	closed    bool                     // Close was called
	epochs    map[Key]*epoch           // the entries, on disk or about to be
	committed int64                    // bytes of committed shards
	reserved  int64                    // bytes reserved by writers in progress
	verified  map[string]stamp         // files whose checksum has been checked (this boot; see verified.go)
	moving    map[string]chan struct{} // epoch directories being moved aside; closed when moved
	trashSeq  int                      // makes trash names unique

	vmu sync.Mutex // serialises appends to verified.log; a leaf lock

	openWriters atomic.Int64 // writers holding a descriptor (Options.MaxOpenWriters)
}

// defaultOpenWriters is a quarter of the soft limit on open files, at
// least 4, leaving the rest to dataset reads, mappings being opened, the
// network and the rest of the process.
func defaultOpenWriters() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return 1024
	}
	return int(max(4, min(lim.Cur/4, 1<<20)))
}

// epoch is the state of one epoch entry. Invariant: an entry with pins or
// writers is never removed from Cache.epochs.
type epoch struct {
	key Key
	dir string

	// fs serialises the changes to the names in dir: its creation, commits'
	// renames and corrupt shards' removals, so that a removal never deletes
	// a file a commit has just renamed into place. Taken before Cache.mu.
	fs sync.Mutex

	// Guarded by Cache.mu:
	onDisk   bool // the directory and its meta.json exist
	shards   map[int]shardFile
	partials map[int]int64 // suspended partial shards (partial.go), by shard: their size, counted in bytes
	stable   map[int]bool  // shards whose writer holds the partial file's name
	bytes    int64
	reserved int64 // by its writers in progress: their shards' sizes (in Cache.reserved)
	pins     int
	writers  int
	evicting bool
	retired  bool // Retire: evicted before the others under the budget, until used again
	lastUsed time.Time
}

// used records a use of ep now: a retired epoch is one again. The caller
// holds Cache.mu.
func (ep *epoch) used() {
	ep.lastUsed = time.Now()
	ep.retired = false
}

// shardFile is one committed shard of an epoch.
type shardFile struct {
	name string
	size int64
}

// Open opens the cache in dir, creating dir if needed. It takes an exclusive
// lock on dir/LOCK (a second Open of the same directory, from this process
// or another, fails with ErrLocked until Close), removes temporary files
// left by a killed process and lists the epochs on disk.
func Open(dir string, opts *Options) (*Cache, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Budget < 0 {
		return nil, fmt.Errorf("shardcache: negative budget %d", o.Budget)
	}
	if o.MaxOpenWriters < 0 {
		return nil, fmt.Errorf("shardcache: negative MaxOpenWriters %d", o.MaxOpenWriters)
	}
	if o.MaxOpenWriters == 0 {
		o.MaxOpenWriters = defaultOpenWriters()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(dir) // readers in other processes are told this path
	if err != nil {
		return nil, fmt.Errorf("shardcache: open: %w", err)
	}
	pm := perms{gid: -1}
	if o.Group != "" {
		gid, err := lookupGroup(o.Group)
		if errors.Is(err, ErrGroup) {
			return nil, err
		} else if err != nil {
			return nil, fmt.Errorf("shardcache: group %q: %w", o.Group, err)
		}
		pm.gid = gid
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("shardcache: open: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("shardcache: open: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = lf.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked; is another loaderd using this cache directory?", ErrLocked, dir)
		}
		return nil, fmt.Errorf("shardcache: lock %s: %w", dir, err)
	}
	c := &Cache{
		dir:      dir,
		opts:     o,
		log:      o.Logger,
		lock:     lf,
		perm:     pm,
		epochs:   make(map[Key]*epoch),
		verified: make(map[string]stamp),
		moving:   make(map[string]chan struct{}),
	}
	c.m, err = newMetrics(o.Registerer, func() float64 { return float64(c.Usage()) })
	if err != nil {
		_ = lf.Close()
		return nil, err
	}
	if err := c.scan(); err != nil {
		c.m.set.Unregister()
		_ = lf.Close()
		return nil, err
	}
	if err := c.share(); err != nil {
		c.m.set.Unregister()
		_ = lf.Close()
		return nil, fmt.Errorf("shardcache: give %s to group %q (is loaderd's user in it?): %w", dir, o.Group, err)
	}
	if err := c.openLocal(); err != nil {
		c.m.set.Unregister()
		_ = lf.Close()
		return nil, err
	}
	c.loadVerified()
	return c, nil
}

// scan lists the epochs on disk and removes what a killed process left:
// temporary files, epoch directories without meta.json and trash.
func (c *Cache) scan() error {
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("shardcache: scan %s: %w", c.dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, trashPrefix):
			c.removeTrash(filepath.Join(c.dir, name))
		case e.IsDir() && isEpochDirName(name):
			if err := c.scanEpoch(name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Cache) scanEpoch(name string) error {
	dir := filepath.Join(c.dir, name)
	k, err := readMeta(dir)
	if err != nil || k.dirName() != name {
		// Killed between mkdir and the rename of meta.json, or damaged:
		// without its key the entry can never be found again.
		c.log.Warn("shardcache: removing epoch directory without a valid meta.json", "dir", dir, "err", err)
		c.removeTrash(dir)
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("shardcache: scan %s: %w", dir, err)
	}
	ep := &epoch{key: k, dir: dir, onDisk: true, shards: make(map[int]shardFile), partials: map[int]int64{}, stable: map[int]bool{}}
	mtimes := make(map[int]time.Time)
	var journals []int
	for _, e := range entries {
		fname := e.Name()
		path := filepath.Join(dir, fname)
		if strings.HasSuffix(fname, tmpSuffix) {
			if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("shardcache: remove temporary file: %w", err)
			}
			c.log.Info("shardcache: removed temporary file", "path", path)
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // gone since ReadDir
		}
		if fi.ModTime().After(ep.lastUsed) {
			ep.lastUsed = fi.ModTime()
		}
		if shard, ok := parsePartialName(fname, partialSuffix); ok && fi.Mode().IsRegular() {
			ep.partials[shard] = fi.Size()
			ep.bytes += fi.Size()
			continue
		}
		if shard, ok := parsePartialName(fname, journalSuffix); ok {
			journals = append(journals, shard)
			continue
		}
		shard, _, ok := parseShardName(fname)
		if !ok || !fi.Mode().IsRegular() {
			continue
		}
		if old, dup := ep.shards[shard]; dup {
			// Two commits of one shard with different bytes: keep the newer.
			drop := old.name
			if fi.ModTime().Before(mtimes[shard]) {
				drop = fname
			} else {
				ep.bytes -= old.size
				ep.shards[shard] = shardFile{name: fname, size: fi.Size()}
				ep.bytes += fi.Size()
				mtimes[shard] = fi.ModTime()
			}
			_ = os.Remove(filepath.Join(dir, drop))
			continue
		}
		ep.shards[shard] = shardFile{name: fname, size: fi.Size()}
		ep.bytes += fi.Size()
		mtimes[shard] = fi.ModTime()
	}
	c.scanPartials(ep, journals)
	c.epochs[k] = ep
	c.committed += ep.bytes
	return nil
}

// Close releases the directory lock. Mappings stay valid until released;
// writers still open fail to commit with ErrClosed. Close is idempotent.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.m.set.Unregister()
	if err := c.lock.Close(); err != nil { // closing the descriptor drops the flock
		return fmt.Errorf("shardcache: close: %w", err)
	}
	return nil
}

// Dir returns the cache directory.
func (c *Cache) Dir() string { return c.dir }

// Budget returns the byte budget; 0 means unlimited.
func (c *Cache) Budget() int64 { return c.opts.Budget }

// Usage returns the bytes of committed shards plus the sizes reserved by
// writers in progress.
func (c *Cache) Usage() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committed + c.reserved
}

// Has reports whether shard of k is committed. It does not verify it.
func (c *Cache) Has(k Key, shard int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	ep := c.epochs[k]
	if c.closed || ep == nil {
		return false
	}
	_, ok := ep.shards[shard]
	return ok
}

// Shards returns the committed shard numbers of k, sorted.
func (c *Cache) Shards(k Key) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	ep := c.epochs[k]
	if c.closed || ep == nil {
		return nil
	}
	out := make([]int, 0, len(ep.shards))
	for s := range ep.shards {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Epochs describes every epoch entry on disk, sorted by key.
func (c *Cache) Epochs() []EpochInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	var out []EpochInfo
	for _, ep := range c.epochs {
		if !ep.onDisk {
			continue
		}
		out = append(out, EpochInfo{
			Key:      ep.key,
			Shards:   len(ep.shards),
			Partial:  len(ep.partials),
			Bytes:    ep.bytes,
			Writing:  ep.reserved,
			Pinned:   ep.pins > 0,
			Evicting: ep.evicting,
			Retired:  ep.retired,
			LastUsed: ep.lastUsed,
		})
	}
	slices.SortFunc(out, func(a, b EpochInfo) int { return compareKeys(a.Key, b.Key) })
	return out
}

func compareKeys(a, b Key) int {
	return cmp.Or(
		cmp.Compare(a.Dataset, b.Dataset),
		cmp.Compare(a.Pipeline, b.Pipeline),
		cmp.Compare(a.Seed, b.Seed),
		cmp.Compare(a.Epoch, b.Epoch),
	)
}

// Pin marks the epoch k as needed by a live stream: it is not evicted for
// the budget, and Evict defers its removal until every pin is released.
// Pins are counted; the returned unpin may be called more than once. An
// epoch may be pinned before it has shards; Epochs lists it from its first
// Create on.
func (c *Cache) Pin(k Key) (unpin func()) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return func() {}
	}
	ep := c.entryLocked(k)
	ep.pins++
	ep.retired = false
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			ep.pins--
			ev := c.settleLocked(ep)
			c.mu.Unlock()
			c.discard(ev)
		})
	}
}

// An Eviction is what Evict did to an epoch.
type Eviction int

const (
	// NotCached: the cache held nothing of the epoch; nothing was done.
	NotCached Eviction = iota
	// Evicted: the epoch was removed.
	Evicted
	// Deferred: the epoch is in use (pinned by a live stream, or a shard
	// of it being written); it is marked evicting and removed when the last
	// pin is released and the last writer finishes.
	Deferred
)

func (e Eviction) String() string {
	switch e {
	case Evicted:
		return "evicted"
	case Deferred:
		return "deferred"
	}
	return "not cached"
}

// Evict removes the epoch k from disk and says what it did. A pinned epoch
// (or one with writers in progress) is marked evicting and removed when the
// last pin is released and the last writer finishes (Deferred); its
// committed shards stay readable until then. Evicting an absent epoch does
// nothing (NotCached). Live Mappings stay valid.
func (c *Cache) Evict(k Key) (Eviction, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return NotCached, ErrClosed
	}
	ep := c.epochs[k]
	if ep == nil {
		c.mu.Unlock()
		return NotCached, nil
	}
	what := Evicted
	switch {
	case ep.pins > 0 || ep.writers > 0:
		what = Deferred
	case !ep.onDisk:
		what = NotCached
	}
	ep.evicting = true
	ev := c.settleLocked(ep)
	c.mu.Unlock()
	c.discard(ev)
	return what, nil
}

// Retire marks the epoch k as one its user will not read (epochs of an
// earlier listing of a dataset, or under another pipeline or seed): over
// budget, idle retired epochs are evicted before any other, least recently
// used first among them. A use of the epoch (Pin, Open, Create) makes it an
// ordinary one again. Retiring an absent epoch does nothing.
func (c *Cache) Retire(k Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ep := c.epochs[k]; ep != nil && !c.closed {
		ep.retired = true
	}
}

// entryLocked returns k's entry, making an in-memory one if there is none.
func (c *Cache) entryLocked(k Key) *epoch {
	ep := c.epochs[k]
	if ep == nil {
		ep = &epoch{
			key:      k,
			dir:      filepath.Join(c.dir, k.dirName()),
			shards:   make(map[int]shardFile),
			partials: map[int]int64{},
			stable:   map[int]bool{},
			lastUsed: time.Now(),
		}
		c.epochs[k] = ep
	}
	return ep
}

// ensureDir creates ep's directory and meta.json unless they exist; the
// caller holds a writer of ep (so the entry stays) and not Cache.mu. If
// the directory of an evicted entry of the same key is still being moved
// aside, it waits for that first.
func (c *Cache) ensureDir(ep *epoch) error {
	ep.fs.Lock()
	defer ep.fs.Unlock()
	for {
		c.mu.Lock()
		done, moving := ep.onDisk, c.moving[ep.dir]
		c.mu.Unlock()
		if done {
			return nil
		}
		if moving == nil {
			break
		}
		<-moving
	}
	if err := c.perm.mkdir(ep.dir); err != nil {
		return fmt.Errorf("shardcache: create epoch %v: %w", ep.key, err)
	}
	if err := writeMeta(ep.dir, ep.key); err != nil {
		return err
	}
	if err := syncDir(ep.dir); err != nil {
		return fmt.Errorf("shardcache: create epoch %v: %w", ep.key, err)
	}
	if err := syncDir(c.dir); err != nil {
		return fmt.Errorf("shardcache: create epoch %v: %w", ep.key, err)
	}
	c.mu.Lock()
	ep.onDisk = true
	c.mu.Unlock()
	return nil
}

// settleLocked applies what a change of pins, writers or evicting implies
// once ep is idle: an evicting epoch is removed, an in-memory entry with
// nothing on disk is forgotten. It returns an eviction for discard.
func (c *Cache) settleLocked(ep *epoch) *eviction {
	if ep.pins > 0 || ep.writers > 0 || c.epochs[ep.key] != ep {
		return nil
	}
	if ep.evicting {
		return c.removeEpochLocked(ep)
	}
	if !ep.onDisk {
		delete(c.epochs, ep.key)
	}
	return nil
}

// An eviction is an epoch directory to move aside and remove, which
// discard does after Cache.mu is released.
type eviction struct {
	dir, trash string
	moved      chan struct{} // Cache.moving[dir]: closed once dir is gone
}

// removeEpochLocked forgets an idle epoch and returns the eviction of its
// directory, or nil when it has none; the caller passes it to discard after
// unlocking. Until then the directory's path is in Cache.moving, so a new
// entry for the same key may be created at once: its directory waits.
func (c *Cache) removeEpochLocked(ep *epoch) *eviction {
	delete(c.epochs, ep.key)
	c.committed -= ep.bytes
	for _, sf := range ep.shards {
		delete(c.verified, filepath.Join(ep.dir, sf.name))
	}
	bytes, shards := ep.bytes, len(ep.shards)
	ep.shards, ep.bytes = nil, 0
	if !ep.onDisk || c.closed {
		return nil
	}
	c.m.evictions.Inc()
	c.log.Info("shardcache: evicted epoch", "key", ep.key, "shards", shards, "bytes", bytes)
	c.trashSeq++
	ev := &eviction{
		dir:   ep.dir,
		trash: filepath.Join(c.dir, fmt.Sprintf("%s%s-%d-%d", trashPrefix, filepath.Base(ep.dir), time.Now().UnixNano(), c.trashSeq)),
		moved: make(chan struct{}),
	}
	c.moving[ep.dir] = ev.moved
	return ev
}

// discard moves the directories of evictions aside and removes them; the
// caller does not hold Cache.mu. A directory that cannot be moved is
// removed in place.
func (c *Cache) discard(evs ...*eviction) {
	for _, ev := range evs {
		if ev == nil {
			continue
		}
		trash := ev.trash
		if err := os.Rename(ev.dir, trash); err != nil {
			c.log.Warn("shardcache: move evicted epoch aside", "dir", ev.dir, "err", err)
			c.removeTrash(ev.dir)
			trash = ""
		}
		c.mu.Lock()
		delete(c.moving, ev.dir)
		c.mu.Unlock()
		close(ev.moved)
		c.removeTrash(trash)
	}
}

// removeTrash removes directories, logging failures (the next Open retries
// trash).
func (c *Cache) removeTrash(dirs ...string) {
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			c.log.Warn("shardcache: remove", "dir", d, "err", err)
		}
	}
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// reserveLocked reserves size bytes for a writer in ep, evicting idle
// epochs when over budget: retired ones first, then least recently used. It returns the
// evictions for discard.
func (c *Cache) reserveLocked(ep *epoch, size int64) ([]*eviction, error) {
	need := c.committed + c.reserved + size - c.opts.Budget
	if c.opts.Budget == 0 || need <= 0 {
		c.reserved += size
		ep.reserved += size
		return nil, nil
	}
	var victims []*epoch
	var freeable int64
	for _, e := range c.epochs {
		if e != ep && e.onDisk && e.pins == 0 && e.writers == 0 && e.bytes > 0 {
			victims = append(victims, e)
			freeable += e.bytes
		}
	}
	if freeable < need {
		return nil, fmt.Errorf("%w: a shard of %s does not fit: %s of the %s budget in use, %s of it by idle epochs that could go",
			ErrBudget, humanize.IBytes(uint64(size)), humanize.IBytes(uint64(c.committed+c.reserved)), humanize.IBytes(uint64(c.opts.Budget)), humanize.IBytes(uint64(freeable)))
	}
	slices.SortFunc(victims, func(a, b *epoch) int { // retired first, then least recently used
		return cmp.Or(-cmpBool(a.retired, b.retired), a.lastUsed.Compare(b.lastUsed), compareKeys(a.key, b.key))
	})
	var evs []*eviction
	for _, v := range victims {
		if need <= 0 {
			break
		}
		need -= v.bytes
		evs = append(evs, c.removeEpochLocked(v))
	}
	c.reserved += size
	ep.reserved += size
	return evs, nil
}

// Open maps the committed shard of k read-only. The first Open of a file in
// this Cache verifies its checksum and size; a shard that fails is deleted
// and ErrCorrupt returned, so the caller recomputes it. No committed shard
// gives ErrMiss. The caller must Release the Mapping.
func (c *Cache) Open(k Key, shard int) (*Mapping, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	ep := c.epochs[k]
	var sf shardFile
	ok := false
	if ep != nil {
		sf, ok = ep.shards[shard]
	}
	if !ok {
		c.mu.Unlock()
		c.m.misses.Inc()
		return nil, fmt.Errorf("%w: shard %d of %v", ErrMiss, shard, k)
	}
	ep.used()
	path := filepath.Join(ep.dir, sf.name)
	c.mu.Unlock()

	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		// Evicted since, or removed behind our back.
		c.forget(ep, shard, sf, nil)
		c.m.misses.Inc()
		return nil, fmt.Errorf("%w: shard %d of %v", ErrMiss, shard, k)
	} else if err != nil {
		return nil, fmt.Errorf("shardcache: open shard %d of %v: %w", shard, k, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("shardcache: open shard %d of %v: %w", shard, k, err)
	}
	if fi.Size() != sf.size || fi.Size() == 0 {
		return nil, c.corrupt(ep, shard, sf, fi, fmt.Sprintf("size %d, want %d", fi.Size(), sf.size))
	}
	st := stampOf(fi)
	c.mu.Lock()
	seen, verified := c.verified[path]
	c.mu.Unlock()
	data, err := unix.Mmap(int(f.Fd()), 0, int(sf.size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("shardcache: map shard %d of %v: %w", shard, k, err)
	}
	if !verified || seen != st {
		_, want, _ := parseShardName(sf.name)
		if got := checksum(data); got != want {
			_ = unix.Munmap(data)
			return nil, c.corrupt(ep, shard, sf, fi, fmt.Sprintf("crc32c %08x, want %08x", got, want))
		}
		c.m.checksums.Inc()
		c.mu.Lock()
		record := c.epochs[k] == ep && ep.shards[shard] == sf
		if record {
			c.verified[path] = st
		}
		c.mu.Unlock()
		if record {
			c.recordVerified(path, st)
		}
	}
	c.m.hits.Inc()
	m := &Mapping{data: data, path: path}
	m.refs.Store(1)
	return m, nil
}

// corrupt deletes a shard file that failed verification, unless a commit
// has replaced it since, and returns the error for Open.
func (c *Cache) corrupt(ep *epoch, shard int, sf shardFile, fi fs.FileInfo, reason string) error {
	c.m.corrupt.Inc()
	c.log.Warn("shardcache: deleting corrupt shard", "key", ep.key, "shard", shard, "file", sf.name, "reason", reason)
	c.forget(ep, shard, sf, fi)
	return fmt.Errorf("%w: shard %d of %v: %s", ErrCorrupt, shard, ep.key, reason)
}

// forget drops a shard from ep, and deletes its file if that is still the
// file fi (nil: the file is known to be gone). Under ep's fs lock, so no
// commit renames a fresh file into place in between.
func (c *Cache) forget(ep *epoch, shard int, sf shardFile, fi fs.FileInfo) {
	ep.fs.Lock()
	defer ep.fs.Unlock()
	path := filepath.Join(ep.dir, sf.name)
	cur, err := os.Stat(path)
	switch {
	case err == nil && fi != nil && os.SameFile(cur, fi):
		if err := os.Remove(path); err != nil {
			c.log.Warn("shardcache: remove corrupt shard", "path", path, "err", err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return // replaced by a new commit, or unreadable: leave it
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epochs[ep.key] == ep && ep.shards[shard] == sf {
		delete(ep.shards, shard)
		ep.bytes -= sf.size
		c.committed -= sf.size
		delete(c.verified, path)
	}
}

func syncDir(dir string) error {
	d, err := openRetry(dir, os.O_RDONLY) // a commit's last step: worth a wait for a descriptor
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
