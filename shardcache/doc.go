// Package shardcache stores encoded shards on local disk, keyed by dataset
// fingerprint, pipeline fingerprint, seed and epoch, and evicts whole epochs
// once trainers move on. It stores opaque bytes: it knows nothing of Arrow.
//
// # Layout
//
// A cache directory holds a LOCK file, flocked by the one process that uses
// it, local/ (see below), and one directory per epoch entry, named by a hash of its Key. An
// epoch directory holds meta.json (the Key, so that a restarted process can
// list its epochs) and the committed shards, named
//
//	shard-<shard %06d>.<crc-32c %08x>.arrow
//
// # Writing
//
// Create makes a temporary file in the epoch directory, lets the caller
// write its skeleton, allocates the file's blocks (so a full disk fails
// there, not as SIGBUS later) and maps it read-write. Workers fill disjoint
// ranges of Writer.Data concurrently; Commit syncs the file, computes the
// checksum, renames the file to its final name and syncs the directory.
// Only then does Open see the shard. At most Options.MaxOpenWriters
// writers keep their file's descriptor open between writes; the others
// open it for each WriteAt, so thousands of shards in production (a cold
// shuffled stream over small shards) do not exhaust the process's files. A process killed at any moment leaves
// either a complete shard or a temporary file that the next Open removes.
//
// # Reading
//
// Open maps a committed shard read-only and verifies its checksum the first
// time this Cache opens that file. A shard that fails the check is deleted
// and reported as ErrCorrupt, so the caller recomputes it. A Mapping is
// reference counted and unmapped by its last Release, never earlier: an
// evicted shard's file is unlinked while mapped, which Linux allows.
//
// # Budget and eviction
//
// Usage counts committed bytes and the sizes reserved by writers in
// progress. When a Create would exceed the budget, whole epochs are evicted,
// least recently used first, skipping pinned epochs, epochs with writers in
// progress and the epoch being written. Pin marks an epoch as needed by a
// live stream; Evict of a pinned epoch marks it evicting and frees it when
// its last pin is released.
//
// # Readers in other processes
//
// Trainers on the same host may map the shard files themselves (SPEC §9).
// Files are created 0644 and directories 0755 less the umask, or, with
// Options.Group, given to that group (directories setgid 2750, files 0640).
// local/token holds a random token a reader shows to prove it can read the
// cache (LocalToken). A Lease gives files names of its own under local/, hard
// links that keep each file reachable, bytes unchanged, whatever happens to
// its name in the cache, until Release. Nothing in the cache ever rewrites or
// truncates a file: commits rename, eviction and corrupt-shard removal unlink.
//
// A Cache is safe for concurrent use. No lock that Has, Open, Usage or
// Epochs take is held across I/O: directory creation, fsyncs, renames,
// removals and verified.log appends happen outside it (see Cache).
package shardcache
