package loader

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/service"
)

// rowScratch returns a row-sized buffer from the pool; Put it back after.
func (l *Loader) rowScratch() *[]byte {
	if b, ok := l.scratch.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, l.pipe.RowBytes())
	return &b
}

// computeRow writes row (e, i) into dst and returns the sample it holds:
// the first j in i, i+1, ... (wrapping) whose file is decodable, augmented
// with sample i's random stream (SPEC §5). Under the fail policy the first
// undecodable file ends it with an error wrapping service.ErrDataLoss.
func (l *Loader) computeRow(d *dataset, e, i int, dst []byte) (int, error) {
	n := d.Len()
	rngs := make([]*rand.Rand, 1)
	for step := range n {
		j := (i + step) % n
		rngs[0] = augment.SampleRand(l.opts.Seed, e, int64(i))
		ok, err := l.applyFile(d, j, [][]byte{dst}, rngs)
		if err != nil {
			return 0, err
		}
		if ok {
			return j, nil
		}
	}
	return 0, fmt.Errorf("loader: dataset %s: %w: no sample decodes", d.Name, service.ErrDataLoss)
}

// computeFused writes the rows of sample i for several epochs from one
// decode (augment.Pipeline.ApplyMulti); dsts[k] is epoch epochs[k]'s row.
// Each row equals what computeRow gives. It returns the sample each row
// holds.
func (l *Loader) computeFused(d *dataset, epochs []int, i int, dsts [][]byte) ([]int, error) {
	rngs := make([]*rand.Rand, len(epochs))
	for k, e := range epochs {
		rngs[k] = augment.SampleRand(l.opts.Seed, e, int64(i))
	}
	ok, err := l.applyFile(d, i, dsts, rngs)
	if err != nil {
		return nil, err
	}
	srcs := make([]int, len(epochs))
	for k, e := range epochs {
		if ok {
			srcs[k] = i
			continue
		}
		if srcs[k], err = l.computeRow(d, e, i, dsts[k]); err != nil { // substitutes
			return nil, err
		}
	}
	return srcs, nil
}

// File states: what this process knows of a file's decodability.
const (
	fileUnknown uint8 = iota
	fileGood          // a full decode succeeded
	fileBad           // a full decode failed (never set by a failed read)
)

// applyFile writes file j augmented with each of rngs into dsts. A file
// is decodable iff a full decode succeeds: its first use in the process
// decodes it whole (ApplyMultiChecked), later uses only what the crops
// need, which gives the same pixels. So which files count as undecodable
// depends on the files alone, never on which rows came first. It reports
// false for an undecodable file under the substitute policy; under the
// fail policy that is an error wrapping service.ErrDataLoss. A file that
// cannot be read, or changed since the listing, is an error (*ReadError,
// *ChangedError) under either policy.
func (l *Loader) applyFile(d *dataset, j int, dsts [][]byte, rngs []*rand.Rand) (bool, error) {
	st := d.state(j)
	if st == fileBad {
		return false, l.undecodableError(d, j)
	}
	src, err := d.ReadFile(j)
	if re := (*ReadError)(nil); errors.As(err, &re) {
		l.met.readErrors.Inc()
		l.log.Warn("loader: sample file unreadable", "dataset", d.Name, "index", j, "path", re.Path, "attempts", re.Attempts, "err", re.Err)
	}
	if err != nil {
		// Unreadable or changed is not undecodable (SPEC §5): no mark, no
		// substitute; the row fails and nothing of it is stored.
		return false, err
	}
	if st == fileGood {
		err = l.pipe.ApplyMulti(dsts, src, rngs)
	} else {
		err = l.pipe.ApplyMultiChecked(dsts, src, rngs)
	}
	switch {
	case err == nil:
		if st == fileUnknown {
			d.setState(j, fileGood)
		}
		l.met.decoded.Inc()
		return true, nil
	case !errors.Is(err, augment.ErrDecode):
		return false, fmt.Errorf("loader: sample %d: %w", j, err)
	case st == fileGood:
		return false, fmt.Errorf("loader: %s (sample %d) decoded in full but not in part: %w", d.Samples[j].Path, j, err)
	}
	l.markBad(d, j, err.Error())
	return false, l.undecodableError(d, j)
}

// undecodableError is nil under the substitute policy, else the error
// naming undecodable file j.
func (l *Loader) undecodableError(d *dataset, j int) error {
	if l.opts.OnError != PolicyFail {
		return nil
	}
	d.mu.Lock()
	reason := d.errs[j].Reason
	d.mu.Unlock()
	return fmt.Errorf("loader: %s (sample %d): %w: %s", d.Samples[j].Path, j, service.ErrDataLoss, reason)
}

// markBad records file j as undecodable, logging and counting it once.
func (l *Loader) markBad(d *dataset, j int, reason string) {
	d.mu.Lock()
	seen := d.files[j] == fileBad
	d.files[j] = fileBad
	if !seen {
		d.errs[j] = service.SampleError{Index: int64(j), Path: d.Samples[j].Path, Kind: service.SampleUndecodable, Reason: reason}
	}
	d.mu.Unlock()
	if !seen {
		l.met.undecodable.Inc()
		l.log.Warn("loader: undecodable sample", "dataset", d.Name, "index", j, "path", d.Samples[j].Path, "reason", reason, "policy", l.opts.OnError)
	}
}

// state returns what is known of file j.
func (d *dataset) state(j int) uint8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.files[j]
}

// setState records what is known of file j.
func (d *dataset) setState(j int, st uint8) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.files[j] == fileUnknown {
		d.files[j] = st
	}
}

// sampleErrors returns the undecodable samples found so far, by index.
func (d *dataset) sampleErrors() []service.SampleError {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]service.SampleError, 0, len(d.errs))
	for _, e := range d.errs {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b service.SampleError) int { return cmp.Compare(a.Index, b.Index) })
	return out
}
