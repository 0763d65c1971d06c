package flightsvc

import (
	"math/bits"
	"sync"
)

// dirtyPool is a mem.BufferPool of power-of-two size classes that, unlike
// gRPC's default pool, does not zero buffers on Get: the client's receive
// buffers are overwritten by the frame read into them, and zeroing them
// cost a sixth of the client's CPU in BenchmarkDoGet.
type dirtyPool struct {
	classes [maxPoolClass + 1]sync.Pool
}

const maxPoolClass = 24 // 16 MiB; larger buffers are not pooled

func (p *dirtyPool) Get(n int) *[]byte {
	c := bits.Len(uint(n - 1))
	if n <= 0 {
		c = 0
	}
	if c > maxPoolClass {
		b := make([]byte, n)
		return &b
	}
	if v, ok := p.classes[c].Get().(*[]byte); ok {
		*v = (*v)[:n]
		return v
	}
	b := make([]byte, n, 1<<c)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	c := cap(*b)
	if c == 0 || c&(c-1) != 0 || bits.Len(uint(c-1)) > maxPoolClass {
		return // not one of ours
	}
	p.classes[bits.Len(uint(c-1))].Put(b)
}
