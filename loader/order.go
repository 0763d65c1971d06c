package loader

import (
	"fmt"
	"math/rand/v2"

	"github.com/loaderd/loaderd/service"
)

// Perm returns perm_e, the shuffled order of epoch e over [0, n) (SPEC §3):
// a Fisher–Yates shuffle drawn from a PCG stream seeded by (seed, epoch)
// alone, in a domain apart from the per-sample augmentation streams.
func Perm(seed uint64, epoch, n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	r := rand.New(rand.NewPCG(mix(seed, 0x7065726d /* "perm" */), mix(uint64(epoch), seed)))
	for i := n - 1; i > 0; i-- {
		j := r.IntN(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// mix is splitmix64's finaliser over a^b-rotated, good enough to turn
// small integers into independent PCG seeds.
func mix(a, b uint64) uint64 {
	z := a + 0x9E3779B97F4A7C15*(b+1)
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// An Order is one rank's view of an epoch: which samples, in which
// batches, as PyTorch's DistributedSampler and DataLoader cut them (SPEC §3).
type Order struct {
	N, Rank, WorldSize, BatchSize, StartBatch int
	DropLast, Shuffle                         bool
	Seed                                      uint64
	Epoch                                     int

	perm    []int // perm_e, or nil for index order
	perRank int   // samples this rank takes over the whole epoch
	batches int   // batches over the whole epoch
}

// NewOrder checks req against a dataset of n samples and returns its order.
// Field ranges are the caller's to check (flightsvc.ParseRequest); NewOrder
// only rejects what would make the order meaningless.
func NewOrder(n int, seed uint64, req service.Request) (*Order, error) {
	switch {
	case n <= 0:
		return nil, fmt.Errorf("loader: order over %d samples", n)
	case req.BatchSize <= 0:
		return nil, &service.FieldError{Field: "batch_size", Reason: "must be at least 1"}
	case req.WorldSize <= 0:
		return nil, &service.FieldError{Field: "world_size", Reason: "must be at least 1"}
	case req.Rank < 0 || req.Rank >= req.WorldSize:
		return nil, &service.FieldError{Field: "rank", Reason: fmt.Sprintf("must be in [0, world_size=%d)", req.WorldSize)}
	case req.StartBatch < 0:
		return nil, &service.FieldError{Field: "start_batch", Reason: "must not be negative"}
	case req.Epoch < 0:
		return nil, &service.FieldError{Field: "epoch", Reason: "must not be negative"}
	}
	o := &Order{
		N: n, Rank: req.Rank, WorldSize: req.WorldSize, BatchSize: req.BatchSize,
		StartBatch: req.StartBatch, DropLast: req.DropLast, Shuffle: req.Shuffle,
		Seed: seed, Epoch: req.Epoch,
	}
	if o.Shuffle {
		o.perm = Perm(seed, req.Epoch, n)
	}
	if o.DropLast {
		o.perRank = n / o.WorldSize
		o.batches = o.perRank / o.BatchSize
	} else {
		o.perRank = (n + o.WorldSize - 1) / o.WorldSize
		o.batches = (o.perRank + o.BatchSize - 1) / o.BatchSize
	}
	if o.StartBatch > o.batches { // equal: a resume saved after the last batch, an empty stream (SPEC §4)
		return nil, &service.FieldError{Field: "start_batch", Reason: fmt.Sprintf("%d is past the end: this rank has %d batches", o.StartBatch, o.batches)}
	}
	return o, nil
}

// Batches returns the number of batches the stream yields, StartBatch on.
func (o *Order) Batches() int { return max(0, o.batches-o.StartBatch) }

// Records returns the number of rows the stream yields, StartBatch on.
func (o *Order) Records() int64 {
	var n int64
	for k := range o.Batches() {
		n += int64(o.batchLen(o.StartBatch + k))
	}
	return n
}

// Batch returns the sample indices of the stream's k-th batch, counting
// from StartBatch: k = 0 is the rank's batch StartBatch.
func (o *Order) Batch(k int) []int {
	b := o.StartBatch + k
	if k < 0 || b >= o.batches {
		return nil
	}
	out := make([]int, o.batchLen(b))
	for j := range out {
		out[j] = o.sample(b*o.BatchSize + j)
	}
	return out
}

// batchLen is the length of the rank's batch b (whole-epoch numbering).
func (o *Order) batchLen(b int) int {
	return min(o.BatchSize, o.perRank-b*o.BatchSize)
}

// sample returns the sample at the rank's position q: position
// Rank + q*WorldSize of perm_e truncated (drop_last) or padded by wrapping
// around to its start.
func (o *Order) sample(q int) int {
	pos := (o.Rank + q*o.WorldSize) % o.N
	if o.perm == nil {
		return pos
	}
	return o.perm[pos]
}
