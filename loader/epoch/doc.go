// Package epoch holds the shards of one epoch of a dataset while the
// loader uses it, and their life cycle: looked up in the cache, mapped,
// or written row by row into a shardcache.Writer and committed.
//
// Shard s of an epoch holds samples [s*S, min(N,(s+1)*S)) in index order,
// laid out by arrowio.ShardLayout. A row missing from the cache is claimed
// by the first caller that needs it (Request, Acquire, Settle), computed by
// the caller (the loader's workers) and written with Store, and its outcome
// given to Finish. Acquire hands out ready rows with a reference that keeps
// their bytes mapped until released. A shard whose rows are all written and
// that no batch reads is committed on a goroutine of Commits, the
// registry the loader shares between its epochs, so that a later user of
// the same epoch waits for a shard on its way into the cache instead of
// computing it again.
//
// shard.go is the life cycle's one home: it starts with the states, the
// transitions, where a shard goes from partial to committed and the lock
// order. The package knows the cache (shardcache), the shard format
// (arrowio) and the service errors (service), not how rows are computed.
package epoch
