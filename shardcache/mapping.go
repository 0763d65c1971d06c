package shardcache

import (
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// A Mapping is a committed shard mapped read-only. It is reference counted:
// Open returns it with one reference, Retain adds one, Release drops one,
// and the last Release unmaps it. Data must not be used after that.
type Mapping struct {
	data []byte
	path string
	refs atomic.Int64
}

// Path returns the path of the shard file as it was opened. The file stays
// there while its epoch is pinned (or until a Lease links it elsewhere).
func (m *Mapping) Path() string { return m.path }

// Data returns the shard's bytes. They are read-only: writing them faults.
func (m *Mapping) Data() []byte { return m.data }

// Retain adds a reference. It must not be called after the last Release.
func (m *Mapping) Retain() {
	if m.refs.Add(1) <= 1 {
		panic("shardcache: Retain of a released Mapping")
	}
}

// Release drops a reference, unmapping the shard with the last one.
func (m *Mapping) Release() {
	switch n := m.refs.Add(-1); {
	case n == 0:
		_ = unix.Munmap(m.data)
	case n < 0:
		panic("shardcache: Mapping released more often than retained")
	}
}
