// Package loader turns datasets into augmented epochs: it lists datasets,
// orders epochs across ranks, computes samples on a bounded pool of workers,
// writes them into fixed-layout Arrow shards of the cache and serves
// batches from those shards. A Loader implements arrowio.Source and
// arrowio.Actions.
//
// Shard s of an epoch holds samples [s*S, min(N,(s+1)*S)) in index order
// (docs/DESIGN.md). Any request is a gather of rows, cached or computed:
// rows missing from the cache are claimed and computed by workers straight
// into the shard's mapping, so two streams never compute one row twice, and
// the bytes of sample i in epoch e are the same on every path.
package loader
