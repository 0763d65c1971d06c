package loader

import (
	"errors"
	"slices"
	"testing"

	"github.com/loaderd/loaderd/service"
)

// referenceBatches is DistributedSampler + DataLoader written out the way
// PyTorch does it, list by list, for comparison with Order.
func referenceBatches(perm []int, rank, world, batch int, dropLast bool) [][]int {
	indices := slices.Clone(perm)
	n := len(indices)
	if dropLast {
		total := (n / world) * world
		indices = indices[:total]
	} else {
		numSamples := (n + world - 1) / world
		total := numSamples * world
		for pad := total - len(indices); pad > 0; {
			take := min(pad, n)
			indices = append(indices, perm[:take]...)
			pad -= take
		}
	}
	var mine []int
	for i := rank; i < len(indices); i += world {
		mine = append(mine, indices[i])
	}
	var out [][]int
	for len(mine) > 0 {
		k := min(batch, len(mine))
		if k < batch && dropLast {
			break
		}
		out = append(out, mine[:k])
		mine = mine[k:]
	}
	return out
}

func TestOrderMatchesReference(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 7, 8, 16, 17, 100} {
		for _, world := range []int{1, 2, 3, 4, 8} {
			for _, batch := range []int{1, 3, 4, 64, 200} {
				for _, dropLast := range []bool{false, true} {
					for _, shuffle := range []bool{false, true} {
						perm := make([]int, n)
						for i := range perm {
							perm[i] = i
						}
						if shuffle {
							perm = Perm(7, 3, n)
						}
						for rank := range world {
							want := referenceBatches(perm, rank, world, batch, dropLast)
							for start := range []int{0, 1, 2} {
								req := service.Request{Dataset: "d", Epoch: 3, BatchSize: batch, Rank: rank,
									WorldSize: world, DropLast: dropLast, StartBatch: start, Shuffle: shuffle}
								o, err := NewOrder(n, 7, req)
								var fe *service.FieldError
								if start > len(want) {
									if !errors.As(err, &fe) || fe.Field != "start_batch" {
										t.Fatalf("start %d past %d batches: %v, want a start_batch error", start, len(want), err)
									}
									continue
								}
								if err != nil {
									t.Fatal(err)
								}
								var got [][]int
								var rows int64
								for k := range o.Batches() {
									got = append(got, o.Batch(k))
									rows += int64(len(o.Batch(k)))
								}
								w := want[min(start, len(want)):]
								if !slices.EqualFunc(got, w, slices.Equal) {
									t.Fatalf("n=%d world=%d rank=%d batch=%d drop=%v shuffle=%v start=%d:\n got %v\nwant %v",
										n, world, rank, batch, dropLast, shuffle, start, got, w)
								}
								if rows != o.Records() {
									t.Fatalf("Records() = %d, batches hold %d", o.Records(), rows)
								}
							}
						}
					}
				}
			}
		}
	}
}

func TestOrderEqualBatchesAcrossRanks(t *testing.T) {
	for _, dropLast := range []bool{false, true} {
		var counts []int
		covered := map[int]bool{}
		for rank := range 3 {
			o, err := NewOrder(10, 1, service.Request{BatchSize: 2, Rank: rank, WorldSize: 3, DropLast: dropLast, Shuffle: true})
			if err != nil {
				t.Fatal(err)
			}
			counts = append(counts, o.Batches())
			for k := range o.Batches() {
				for _, i := range o.Batch(k) {
					covered[i] = true
				}
			}
		}
		if counts[0] != counts[1] || counts[1] != counts[2] {
			t.Errorf("drop_last=%v: batch counts per rank %v differ", dropLast, counts)
		}
		if !dropLast && len(covered) != 10 {
			t.Errorf("without drop_last the ranks cover %d of 10 samples", len(covered))
		}
	}
}

func TestPerm(t *testing.T) {
	a := Perm(42, 0, 1000)
	if !slices.Equal(a, Perm(42, 0, 1000)) {
		t.Fatal("Perm is not deterministic")
	}
	if slices.Equal(a, Perm(42, 1, 1000)) || slices.Equal(a, Perm(43, 0, 1000)) {
		t.Fatal("Perm ignores the epoch or the seed")
	}
	sorted := slices.Sorted(slices.Values(a))
	for i, v := range sorted {
		if v != i {
			t.Fatalf("Perm(42,0,1000) is not a permutation: sorted[%d] = %d", i, v)
		}
	}
	fixed := 0
	for i, v := range a {
		if i == v {
			fixed++
		}
	}
	if fixed > 10 { // a uniform permutation has ~1 fixed point
		t.Errorf("Perm leaves %d of 1000 in place; not shuffled", fixed)
	}
}

func TestNewOrderRejects(t *testing.T) {
	tests := []struct {
		name  string
		req   service.Request
		field string
	}{
		{name: "rank beyond world", req: service.Request{BatchSize: 1, Rank: 2, WorldSize: 2}, field: "rank"},
		{name: "zero batch", req: service.Request{BatchSize: 0, WorldSize: 1}, field: "batch_size"},
		{name: "zero world", req: service.Request{BatchSize: 1, WorldSize: 0}, field: "world_size"},
		{name: "negative start", req: service.Request{BatchSize: 1, WorldSize: 1, StartBatch: -1}, field: "start_batch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewOrder(10, 0, tc.req)
			var fe *service.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, service.ErrInvalid) {
				t.Fatalf("NewOrder(%+v) = %v; want a FieldError on %q", tc.req, err, tc.field)
			}
		})
	}
}
