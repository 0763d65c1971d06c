// Package loader turns datasets into augmented epochs: it lists datasets,
// orders epochs across ranks, computes samples on a bounded pool of workers,
// writes them into fixed-layout Arrow shards of the cache and serves
// batches from those shards. A Loader implements service.Source and
// service.Actions.
//
// Shard s of an epoch holds samples [s*S, min(N,(s+1)*S)) in index order
// (docs/DESIGN.md). Any request is a gather of rows, cached or computed:
// a row missing from the cache is claimed by the first stream or
// precompute that needs it and computed by a worker straight into the
// shard's mapping, so two streams never compute one row twice and the
// bytes of sample i in epoch e are the same on every path. A shard becomes
// visible in the cache once all its rows are written and no batch still
// reads its writer's mapping (shardcache commits it: fsync, checksum,
// rename), so a killed process leaves only whole shards behind.
//
// Work runs on worker goroutines (loader/workers), one group per placement
// pool (gpu.Place), pinned to their GPU's CPUs. Stream tasks go first;
// precompute and background prefetch (Run) take the workers only when no
// stream task waits. Memory is bounded by the workers and the batches each
// stream reads ahead, not by the dataset.
//
// The shards of an epoch in use, and their life cycle from absent through
// partial to committed, are loader/epoch's (its shard.go states the
// transitions and the lock order); the loader keeps the registry of epochs
// in use and who uses them (work.go), computes rows (compute.go) and
// gathers them into batches (stream.go).
//
// Undecodable samples follow SPEC §5: row (e, i) holds the first sample j
// in i, i+1, … (wrapping) whose file is decodable, augmented with sample
// i's random stream. A file is decodable iff it decodes in full: its first
// use in a process decodes it whole (augment's ApplyMultiChecked), later
// uses only the rows their crops need, and a file known undecodable is
// skipped without trying. So a truncated JPEG whose top still decodes is
// undecodable in every epoch, whatever rows came first. Under the fail
// policy the stream or precompute ends with an error wrapping
// service.ErrDataLoss.
//
// A file that cannot be read is not undecodable (read.go): the read is
// retried, then the request that needed the row ends with a *ReadError
// (service.ErrUnreadable); a file that changed or vanished since the
// listing ends it with a *ChangedError (service.ErrStale). Neither marks
// the file, and the row is left absent, so its shard does not commit and
// a later request computes it afresh.
package loader
