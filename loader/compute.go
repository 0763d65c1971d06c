package loader

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/augment"
)

// computeRow writes row (e, i) into dst and returns the sample it holds:
// the first j in i, i+1, ... (wrapping) whose file Apply accepts with
// sample i's random stream (SPEC §5). A file is skipped without trying
// only once augment.Check has failed on it too, so the row never depends
// on what other rows learnt first. Under the fail policy the first
// undecodable file ends it with an error wrapping arrowio.ErrDataLoss.
func (l *Loader) computeRow(d *dataset, e, i int, dst []byte) (int, error) {
	n := d.Len()
	for step := range n {
		j := (i + step) % n
		if d.isBad(j) {
			if l.opts.OnError == PolicyFail {
				return 0, d.lossError(j)
			}
			continue
		}
		src, readErr := d.ReadFile(j)
		var err error
		if readErr == nil {
			err = l.pipe.Apply(dst, src, augment.SampleRand(l.opts.Seed, e, int64(i)))
			if err == nil {
				l.met.decoded.Inc()
				return j, nil
			}
			if !errors.Is(err, augment.ErrDecode) {
				return 0, fmt.Errorf("loader: sample %d: %w", j, err)
			}
		}
		memo := l.undecodable(d, j, src, readErr)
		if l.opts.OnError == PolicyFail {
			if memo {
				return 0, d.lossError(j)
			}
			return 0, fmt.Errorf("loader: %s (sample %d): %w: %w", d.Samples[j].Path, j, arrowio.ErrDataLoss, err)
		}
	}
	return 0, fmt.Errorf("loader: dataset %s: %w: no sample decodes", d.Name, arrowio.ErrDataLoss)
}

// computeFused writes the rows of sample i for several epochs from one
// decode (augment.Pipeline.ApplyMulti); dsts[k] is epoch epochs[k]'s row.
// Each row equals what computeRow gives. It returns the sample each row
// holds.
func (l *Loader) computeFused(d *dataset, epochs []int, i int, dsts [][]byte) ([]int, error) {
	srcs := make([]int, len(epochs))
	if !d.isBad(i) {
		src, readErr := d.ReadFile(i)
		if readErr == nil {
			rngs := make([]*rand.Rand, len(epochs))
			for k, e := range epochs {
				rngs[k] = augment.SampleRand(l.opts.Seed, e, int64(i))
			}
			err := l.pipe.ApplyMulti(dsts, src, rngs)
			if err == nil {
				l.met.decoded.Inc()
				for k := range srcs {
					srcs[k] = i
				}
				return srcs, nil
			}
			if !errors.Is(err, augment.ErrDecode) {
				return nil, fmt.Errorf("loader: sample %d: %w", i, err)
			}
		}
		l.undecodable(d, i, src, readErr)
	}
	for k, e := range epochs { // sample i's file is bad (or odd): row by row
		j, err := l.computeRow(d, e, i, dsts[k])
		if err != nil {
			return nil, err
		}
		srcs[k] = j
	}
	return srcs, nil
}

// undecodable records file j as undecodable when it cannot be read or
// augment.Check fails on it too, logging and counting it once; it reports
// whether it did.
func (l *Loader) undecodable(d *dataset, j int, src []byte, readErr error) bool {
	reason := ""
	if readErr != nil {
		reason = readErr.Error()
	} else if err := augment.Check(src, augment.Limits{}); err != nil {
		reason = err.Error()
	} else {
		return false // Apply failed where a full decode succeeds: not memoized
	}
	d.mu.Lock()
	seen := d.bad[j]
	d.bad[j] = true
	if !seen {
		d.errs[j] = arrowio.SampleError{Index: int64(j), Path: d.Samples[j].Path, Reason: reason}
	}
	d.mu.Unlock()
	if !seen {
		l.met.undecodable.Inc()
		l.log.Warn("loader: undecodable sample", "dataset", d.Name, "index", j, "path", d.Samples[j].Path, "reason", reason, "policy", l.opts.OnError)
	}
	return true
}

// isBad reports whether file j is known undecodable.
func (d *dataset) isBad(j int) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bad[j]
}

// lossError is the fail policy's error for undecodable file j.
func (d *dataset) lossError(j int) error {
	d.mu.Lock()
	reason := d.errs[j].Reason
	d.mu.Unlock()
	return fmt.Errorf("loader: %s (sample %d): %w: %s", d.Samples[j].Path, j, arrowio.ErrDataLoss, reason)
}

// sampleErrors returns the undecodable samples found so far, by index.
func (d *dataset) sampleErrors() []arrowio.SampleError {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]arrowio.SampleError, 0, len(d.errs))
	for _, e := range d.errs {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b arrowio.SampleError) int { return cmp.Compare(a.Index, b.Index) })
	return out
}
