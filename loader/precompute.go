package loader

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/loader/epoch"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/shardcache"
)

// progressEvery is how often Precompute reports progress.
const progressEvery = 500 * time.Millisecond

// errEvicted stops a prefetch whose epoch was explicitly evicted.
var errEvicted = errors.New("loader: epoch evicted")

// Precompute computes the epochs of a dataset into the cache and returns
// when all are committed (service.Actions). Each image is decoded once
// for all its epochs. Cached shards are skipped and counted, so it is
// idempotent and resumes where a killed run stopped. progress, when not
// nil, is called about every half second and once at the end; its error
// stops the work.
func (l *Loader) Precompute(ctx context.Context, dataset string, epochs []int, progress func(service.PrecomputeProgress) error) (service.PrecomputeSummary, error) {
	d, err := l.lookup(dataset)
	if err != nil {
		return service.PrecomputeSummary{}, err
	}
	es, err := epochList(epochs)
	if err != nil {
		return service.PrecomputeSummary{}, err
	}
	fit, left, budgetErr := l.budgetFit(d, es)
	if len(fit) == 0 {
		return service.PrecomputeSummary{Dataset: d.Name, Epochs: []int{}}, budgetErr
	}
	if progress != nil && len(left) > 0 {
		// The bar covers the whole request, so it stops where the budget did.
		var leftRows int64
		for _, e := range left {
			leftRows += int64(d.Len()) - l.cachedRows(d, e)
		}
		inner := progress
		progress = func(p service.PrecomputeProgress) error {
			p.Epochs, p.Total = es, p.Total+leftRows
			return inner(p)
		}
	}
	sum, err := l.precompute(ctx, d, fit, nil, workPrecompute, progress)
	if err == nil {
		err = budgetErr
	}
	return sum, err
}

// A BudgetError reports a precompute whose epochs do not all fit in the
// cache budget: the epochs that fit were computed and kept, the others
// left out. It wraps service.ErrExhausted (gRPC ResourceExhausted).
type BudgetError struct {
	Dataset    string
	EpochBytes int64 // one epoch of the dataset on disk
	Budget     int64 // the cache budget
	Free       int64 // bytes the budget had for the request: not held by epochs in use
	Kept       []int // requested epochs that fit, cached once the call returns
	Left       []int // requested epochs left out
	Need       int64 // bytes the left-out epochs still need
	Short      int64 // bytes the budget lacks to hold them too
}

func (e *BudgetError) Error() string {
	if e.EpochBytes > e.Budget {
		what := "epoch " + FormatEpochs(e.Left)
		if len(e.Left) > 1 {
			what = "epochs " + FormatEpochs(e.Left)
		}
		return fmt.Sprintf("loader: cache budget: an epoch of %s takes %s, more than the whole budget of %s: %s can be streamed (uncached) but not precomputed%s; a budget of %s would hold them all",
			e.Dataset, humanize.IBytes(uint64(e.EpochBytes)), humanize.IBytes(uint64(e.Budget)), what, e.kept(), humanize.IBytes(uint64(e.Budget+e.Short)))
	}
	var b strings.Builder
	left, verb, pronoun := "epochs "+FormatEpochs(e.Left), "do", "they need"
	if len(e.Left) == 1 {
		left, verb, pronoun = "epoch "+FormatEpochs(e.Left), "does", "it needs"
	}
	fmt.Fprintf(&b, "loader: cache budget: %s of %s %s not fit: %s %s more (%s an epoch) and the budget of %s had %s for this request",
		left, e.Dataset, verb, pronoun, humanize.IBytes(uint64(e.Need)), humanize.IBytes(uint64(e.EpochBytes)), humanize.IBytes(uint64(e.Budget)), humanize.IBytes(uint64(e.Free)))
	if e.Free < e.Budget {
		b.WriteString(", the rest holding epochs in use")
	}
	b.WriteString(e.kept())
	fmt.Fprintf(&b, "; a budget of %s would hold them all", humanize.IBytes(uint64(e.Budget+e.Short)))
	return b.String()
}

// kept words the epochs that fit: "; epoch 0 is cached", or "".
func (e *BudgetError) kept() string {
	switch len(e.Kept) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf("; epoch %s is cached", FormatEpochs(e.Kept))
	}
	return fmt.Sprintf("; epochs %s are cached", FormatEpochs(e.Kept))
}

// Unwrap makes errors.Is(err, service.ErrExhausted) hold.
func (e *BudgetError) Unwrap() error { return service.ErrExhausted }

// budgetFit splits the epochs es of d into those whose missing shards fit
// in the cache budget beside the epochs in use (idle epochs count as
// evictable) and those that do not, keeping order; with no budget all fit.
// When some are left out it returns a *BudgetError naming both.
func (l *Loader) budgetFit(d *dataset, es []int) (fit, left []int, err error) {
	budget := l.cache.Budget()
	if budget == 0 {
		return es, nil, nil
	}
	l.mu.Lock()
	live := make([]epochID, 0, len(l.live))
	for id := range l.live {
		live = append(live, id)
	}
	l.mu.Unlock()
	avail, onDisk := l.headroom(live)
	size := l.epochBytes(d)
	isLive := func(e int) bool { return slices.Contains(live, idOf(d, e)) }
	free := max(0, avail)
	for _, e := range es { // this request keeps what it has: not evictable for it
		if !isLive(e) {
			avail -= onDisk[l.key(d, e)]
		}
	}
	for _, e := range es {
		need := size - onDisk[l.key(d, e)]
		if isLive(e) || l.complete(d, e) {
			need = 0 // a stream holds it already, or it is done
		}
		if need == 0 || need <= avail {
			avail -= need
			fit = append(fit, e)
		} else {
			left = append(left, e)
		}
	}
	if len(left) == 0 {
		return fit, nil, nil
	}
	be := &BudgetError{Dataset: d.Name, EpochBytes: size, Budget: budget, Free: free, Kept: fit, Left: left}
	for _, e := range left {
		be.Need += size - onDisk[l.key(d, e)]
	}
	be.Short = be.Need - avail // avail < 0: the epochs kept already take more than the budget has
	return fit, left, be
}

// cachedRows is the number of rows of epoch e of d in committed shards.
func (l *Loader) cachedRows(d *dataset, e int) int64 {
	var n int64
	for _, s := range l.cache.Shards(l.key(d, e)) {
		n += int64(max(0, min(l.opts.ShardSize, d.Len()-s*l.opts.ShardSize)))
	}
	return n
}

// FormatEpochs writes sorted epochs compactly, as the --epochs flag
// takes them: "0-3,7".
func FormatEpochs(es []int) string {
	var parts []string
	for i := 0; i < len(es); {
		j := i
		for j+1 < len(es) && es[j+1] == es[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", es[i], es[j]))
		} else {
			parts = append(parts, strconv.Itoa(es[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// A selection says which rows of which epochs a precompute fills: sample
// i of epoch e when sel(e, i); nil means every row of every epoch. A
// selection of whole shards fills and commits them; a selection of rows
// (a node's ranks, for prefetch) fills the rows, which stay in partial
// shards.
type selection func(e, i int) bool

// has reports whether sel selects sample i of epoch e.
func (sel selection) has(e, i int) bool { return sel == nil || sel(e, i) }

// epochList checks and sorts epochs, dropping repeats.
func epochList(epochs []int) ([]int, error) {
	if len(epochs) == 0 {
		return nil, &service.FieldError{Field: "epochs", Reason: "no epoch named"}
	}
	es := slices.Clone(epochs)
	slices.Sort(es)
	es = slices.Compact(es)
	if es[0] < 0 || es[len(es)-1] >= 1<<31 {
		return nil, &service.FieldError{Field: "epochs", Reason: "an epoch is out of [0, 2^31)"}
	}
	return es, nil
}

// precompute fills the shards sel selects of the epochs es of d (work kind
// workPrecompute or workPrefetch) in index order, the rows of one sample
// for every epoch in one task, at background priority.
func (l *Loader) precompute(ctx context.Context, d *dataset, es []int, sel selection, kind work, progress func(service.PrecomputeProgress) error) (service.PrecomputeSummary, error) {
	start := time.Now()
	sum := service.PrecomputeSummary{Dataset: d.Name, Epochs: es}
	eps := make([]*openEpoch, 0, len(es))
	for _, e := range es {
		ep, release, err := l.acquire(d, e, kind)
		if err != nil {
			return sum, err
		}
		defer release()
		eps = append(eps, ep)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	r := &runner{l: l, kind: kind, pool: -1, fail: cancel}
	defer r.tasks.Wait()
	defer cancel(nil)

	var total int64
	for _, ep := range eps {
		for _, sh := range ep.Shards() {
			if !sel.has(ep.id.epoch, sh.Lo()) {
				continue
			}
			total += int64(sh.Rows())
			committed, err := sh.Committed()
			if err != nil {
				return sum, err
			}
			if committed {
				sum.Cached += int64(sh.Rows())
			}
		}
	}
	total -= sum.Cached
	if total == 0 {
		progress = nil // every row is cached: no progress to report, the summary says so
	}
	report := func() error {
		if progress == nil {
			return nil
		}
		done := r.done.Load()
		return progress(service.PrecomputeProgress{Dataset: d.Name, Epochs: es, Done: done, Total: total, ImagesPerSec: rate(done, time.Since(start))})
	}
	if err := report(); err != nil { // at once: a display learns the total, and when the work began
		return sum, err
	}
	var ticker sync.WaitGroup
	ticker.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := report(); err != nil {
					cancel(err)
					return
				}
			}
		}
	})
	err := l.fill(ctx, r, d, eps, sel, cancel)
	cancel(nil)
	ticker.Wait()
	r.tasks.Wait()
	sum.Computed = r.done.Load()
	sum.Seconds = time.Since(start).Seconds()
	sum.ImagesPerSec = rate(sum.Computed, time.Since(start))
	if err != nil {
		return sum, err
	}
	// Every selected row is written now: those not computed here were in
	// partial shards (kept by an earlier run, or written meanwhile by a
	// stream).
	sum.Resumed = max(0, total-sum.Computed)
	for _, info := range l.cache.Epochs() {
		for _, ep := range eps {
			if info.Key == ep.Key() {
				sum.Bytes += info.Bytes
			}
		}
	}
	if progress != nil {
		if err := progress(service.PrecomputeProgress{Dataset: d.Name, Epochs: es, Done: total, Total: total, ImagesPerSec: sum.ImagesPerSec}); err != nil {
			return sum, err
		}
	}
	return sum, nil
}

// fill computes every missing row of the shards sel selects of eps and
// waits until each is committed, in two passes: fillFused, then settle. A
// task's failure cancels ctx with its error.
//
// A prefetch with a selection (a node's ranks: ranks.go) fills rows, not
// shards: its second pass waits for the rows, and the shards stay partial.
func (l *Loader) fill(ctx context.Context, r *runner, d *dataset, eps []*openEpoch, sel selection, cancel context.CancelCauseFunc) error {
	if err := l.fillFused(ctx, r, d, eps, sel, cancel); err != nil {
		return err
	}
	if r.kind == workPrefetch && sel != nil {
		return l.settleRows(ctx, r, eps, sel)
	}
	return l.settle(ctx, r, eps, sel)
}

// samples returns, in index order, the samples sel selects in some epoch
// of eps.
func (l *Loader) samples(d *dataset, eps []*openEpoch, sel selection) func(yield func(int) bool) {
	return func(yield func(int) bool) {
		for i := range d.Len() {
			if sel != nil && !slices.ContainsFunc(eps, func(ep *openEpoch) bool { return sel(ep.id.epoch, i) }) {
				continue
			}
			if !yield(i) {
				return
			}
		}
	}
}

// fillFused is fill's first pass: in index order, it claims sample i's
// missing rows in every epoch of eps whose shard sel selects and computes
// them in one task, from one decode.
func (l *Loader) fillFused(ctx context.Context, r *runner, d *dataset, eps []*openEpoch, sel selection, cancel context.CancelCauseFunc) error {
	fused := make([]int, 0, len(eps))
	for i := range l.samples(d, eps, sel) {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if r.kind == workPrefetch && l.anyEvicted(eps) {
			return errEvicted
		}
		fused = fused[:0]
		var shs []*epoch.Shard
		var ps []int // the row of sample i in each of shs
		for _, ep := range eps {
			if !sel.has(ep.id.epoch, i) {
				continue
			}
			sh, p := ep.ShardOf(i)
			claimed, err := sh.Request(p, false)
			if err != nil {
				return err
			}
			if claimed && l.inTier(ctx, ep, sh, p) {
				// Read from the shared tier by a fetcher (a worker
				// computes it if that fails), not decoded here.
				if !r.fetch(ctx, ep, sh, p) {
					return r.stopped(ctx)
				}
				continue
			}
			if claimed {
				fused = append(fused, ep.id.epoch)
				shs, ps = append(shs, sh), append(ps, p)
			}
		}
		if len(shs) == 0 {
			continue
		}
		es := slices.Clone(fused)
		r.tasks.Add(1)
		ok := l.sched.Submit(ctx, r.pool, r.kind.high(), func() {
			defer r.tasks.Done()
			finish := func(err error) {
				for k, sh := range shs {
					sh.Finish(ps[k], 0, 0, err)
				}
			}
			if ctx.Err() != nil {
				finish(epoch.ErrAbandoned)
				return
			}
			imgs := make([][]byte, len(shs))
			for k := range imgs {
				img := l.rowScratch()
				defer l.scratch.Put(img)
				imgs[k] = *img
			}
			srcs, err := l.computeFused(d, es, i, imgs)
			for k := 0; err == nil && k < len(shs); k++ {
				err = shs[k].Store(ps[k], imgs[k])
			}
			if err != nil {
				finish(err)
				cancel(err)
				return
			}
			for k, sh := range shs {
				sh.Finish(ps[k], uint64(srcs[k]), d.Samples[srcs[k]].Label, nil)
			}
			l.met.computed.WithLabelValues(r.kind.String()).Add(float64(len(shs)))
			r.done.Add(int64(len(shs)))
		})
		if !ok {
			r.tasks.Done()
			for k, sh := range shs {
				sh.Finish(ps[k], 0, 0, epoch.ErrAbandoned)
			}
			return r.stopped(ctx)
		}
	}
	return nil
}

// settle is fill's second pass: it waits until every shard sel selects of
// eps is committed. Rows claimed by streams that left are absent again: it
// computes them too, one task per row.
func (l *Loader) settle(ctx context.Context, r *runner, eps []*openEpoch, sel selection) error {
	for _, ep := range eps {
		for _, sh := range ep.Shards() {
			if !sel.has(ep.id.epoch, sh.Lo()) {
				continue
			}
			for {
				committed, claims, wait, err := sh.Settle()
				if err != nil {
					return err
				}
				if committed {
					break
				}
				if len(claims) > 0 && r.kind == workPrefetch {
					// Rows went missing (a stream gave them up, or the
					// budget evicted the epoch): leave them to streams
					// rather than fight the budget.
					for _, p := range claims {
						sh.Finish(p, 0, 0, epoch.ErrAbandoned)
					}
					return errEvicted
				}
				for _, p := range claims {
					if !r.submit(ctx, ep, sh, p) {
						return r.stopped(ctx)
					}
				}
				select {
				case <-wait:
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
		}
	}
	return nil
}

// anyEvicted reports whether one of eps was explicitly evicted.
func (l *Loader) anyEvicted(eps []*openEpoch) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ep := range eps {
		if l.evicted[ep.id] {
			return true
		}
	}
	return false
}

// rate is n per second over d.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// prefetch precomputes, in the background, epochs e+1 … e+PrefetchEpochs
// of every epoch e being streamed, skipping epochs explicitly evicted until
// a stream asks for them. It returns nil once ctx is done and its work has
// stopped.
func (l *Loader) prefetch(ctx context.Context) error {
	if l.opts.PrefetchEpochs == 0 {
		<-ctx.Done()
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.wake:
		}
		for {
			d, es, base := l.prefetchTarget()
			if len(es) == 0 {
				break
			}
			shape := l.shapeOf(d, base)
			sel, err := l.rowsOf(d, shape, es)
			if err != nil {
				l.log.Warn(prefetchStopped(err), "dataset", d.Name, "epochs", FormatEpochs(es), "err", err)
				break
			}
			l.log.Debug("loader: prefetch", "dataset", d.Name, "epochs", es, "ranks", shape)
			_, err = l.precompute(ctx, d, es, sel, workPrefetch, nil)
			if ctx.Err() != nil {
				return nil
			}
			if err == nil && sel != nil {
				l.mu.Lock()
				for _, e := range es {
					l.prefetched[prefetchDone{idOf(d, e), shape.String()}] = true
				}
				l.mu.Unlock()
			}
			if err != nil {
				if !errors.Is(err, errEvicted) {
					l.log.Warn(prefetchStopped(err), "dataset", d.Name, "epochs", FormatEpochs(es), "err", err)
					break // until the next stream starts
				}
			}
		}
	}
}

// prefetchStopped is the log message of a prefetch that err stopped: what
// happened, what follows and what the operator can do about it.
func prefetchStopped(err error) string {
	const again = "; it starts again with the next stream"
	switch {
	case errors.Is(err, service.ErrStale):
		return "loader: prefetch stopped: a file of the dataset changed since it was listed; the new listing's epochs are prefetched once a stream reads them"
	case errors.Is(err, service.ErrExhausted):
		return "loader: prefetch stopped: the cache budget is taken by epochs in use" + again + " (a larger --cache-budget or fewer --prefetch-epochs let it finish)"
	case errors.Is(err, service.ErrUnreadable):
		return "loader: prefetch stopped: a sample file could not be read" + again + " (check the file's permissions and its disk)"
	case errors.Is(err, service.ErrDataLoss):
		return "loader: prefetch stopped: an undecodable sample under --on-error fail" + again + " (`loaderd scan` lists such files)"
	}
	return "loader: prefetch stopped" + again
}

// prefetchTarget returns a dataset and the epochs after its streamed ones
// (live, or the last streamed) that are neither complete in the cache (or,
// for a node serving some ranks, filled for those ranks) nor explicitly
// evicted.
//
// It also returns the streamed epoch the others follow: its ranks are the
// ones prefetched.
func (l *Loader) prefetchTarget() (*dataset, []int, int) {
	l.mu.Lock()
	ids := make([]epochID, 0, len(l.live))
	for id := range l.live {
		ids = append(ids, id)
	}
	for _, id := range l.recent { // streamed last, though its streams may have ended
		if l.live[id] == 0 {
			ids = append(ids, id)
		}
	}
	evicted := make(map[epochID]bool, len(l.evicted))
	for id := range l.evicted {
		evicted[id] = true
	}
	done := maps.Clone(l.prefetched)
	l.mu.Unlock()
	slices.SortFunc(ids, func(a, b epochID) int {
		if a.set != b.set {
			return strings.Compare(a.set, b.set)
		}
		return a.epoch - b.epoch
	})
	avail, onDisk := l.headroom(ids)
	for _, id := range ids {
		d := l.sets[id.set].current()
		if d.Fingerprint != id.fp {
			continue // a stream of an older listing: its next epochs are nobody's
		}
		shape := ""
		if sh := l.shapeOf(d, id.epoch); sh != nil {
			shape = sh.String()
		}
		var es []int
		for e := id.epoch + 1; e <= id.epoch+l.opts.PrefetchEpochs && e < 1<<31; e++ {
			if evicted[idOf(d, e)] || done[prefetchDone{idOf(d, e), shape}] || l.complete(d, e) {
				continue
			}
			if avail >= 0 { // a budget: prefetch only what fits beside the streams
				need := l.epochBytes(d) - onDisk[l.key(d, e)]
				if need > avail {
					break
				}
				avail -= need
			}
			es = append(es, e)
		}
		if len(es) > 0 {
			return d, es, id.epoch
		}
	}
	return nil, nil, 0
}

// headroom returns the bytes of the cache budget prefetching may use (-1:
// no budget) and the bytes each epoch has on disk. A prefetch must leave
// the streams room to finish their epochs: a Create over budget can evict
// only idle epochs, not one a prefetch is writing. So the headroom is the
// budget less whole streamed epochs, the other pinned epochs and the
// other writers' reservations; idle epochs count as free (evictable).
func (l *Loader) headroom(live []epochID) (int64, map[shardcache.Key]int64) {
	onDisk := map[shardcache.Key]int64{}
	liveKeys := map[shardcache.Key]bool{}
	avail := l.cache.Budget()
	var reservedLive int64
	for _, id := range live {
		d := l.liveSet(id)
		if d == nil {
			continue // its streams ended meanwhile
		}
		liveKeys[l.key(d, id.epoch)] = true
		avail -= l.epochBytes(d)
		reservedLive += l.reserved(id)
	}
	var committed int64
	for _, info := range l.cache.Epochs() {
		onDisk[info.Key] = info.Bytes
		committed += info.Bytes
		if info.Pinned && !liveKeys[info.Key] {
			avail -= info.Bytes
		}
	}
	if l.cache.Budget() == 0 {
		return -1, onDisk
	}
	avail -= max(0, l.cache.Usage()-committed-reservedLive)
	return max(0, avail), onDisk
}

// liveSet returns the listing of epoch id in use, nil when it is not.
func (l *Loader) liveSet(id epochID) *dataset {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ep := l.epochs[id]; ep != nil {
		return ep.d
	}
	return nil
}

// reserved returns the bytes of the writers of epoch id in production.
func (l *Loader) reserved(id epochID) int64 {
	l.mu.Lock()
	ep := l.epochs[id]
	l.mu.Unlock() // before the shards' locks
	if ep == nil {
		return 0
	}
	return ep.Reserved()
}

// epochBytes is the size of an epoch of d on disk: its shard files.
func (l *Loader) epochBytes(d *dataset) int64 {
	d.sizeOnce.Do(func() {
		s, err := l.schema(d, 0)
		if err != nil {
			return
		}
		for lo := 0; lo < d.Len(); lo += l.opts.ShardSize {
			lay, err := arrowio.NewShardLayout(s, min(l.opts.ShardSize, d.Len()-lo))
			if err != nil {
				return
			}
			d.size += lay.Size
		}
	})
	return d.size
}

// EpochBytes returns the bytes an epoch of a served dataset takes on disk
// (its shard files): a cache budget smaller than that streams its epochs
// uncached. The error wraps service.ErrNotFound for an unknown dataset.
func (l *Loader) EpochBytes(dataset string) (int64, error) {
	d, err := l.lookup(dataset)
	if err != nil {
		return 0, err
	}
	return l.epochBytes(d), nil
}

// complete reports whether every shard of epoch e of d is committed.
func (l *Loader) complete(d *dataset, e int) bool {
	return len(l.cache.Shards(l.key(d, e))) == l.shardCount(d)
}

// shardCount is the number of shards of an epoch of d.
func (l *Loader) shardCount(d *dataset) int {
	return (d.Len() + l.opts.ShardSize - 1) / l.opts.ShardSize
}
