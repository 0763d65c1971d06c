// Package ntcopy copies large buffers with non-temporal stores: on amd64
// with AVX2 (and not built with -tags purego), Copy writes the destination
// with VMOVNTDQ, which skips reading each destination cache line before
// writing it and leaves the caches to the source. It is for copies much
// larger than the caches, such as the rows of a local stream's batch; other
// builds and CPUs copy with the builtin copy.
//
// Stores made by Copy are weakly ordered: before another goroutine may rely
// on the bytes (a batch handed to a caller), the goroutine that copied must
// call Fence, or synchronise in a way that does (a sync or atomic
// operation: locked instructions drain the write-combining buffers).
package ntcopy

import "unsafe"

// minNT is the length from which Copy uses non-temporal stores: below it
// the cache lines it would leave out are not worth the aligned head and
// tail.
const minNT = 256

// Available reports whether Copy uses non-temporal stores in this build on
// this CPU (amd64 with AVX2, not built with -tags purego).
func Available() bool { return available }

// Copy copies min(len(dst), len(src)) bytes from src to dst, as the
// builtin copy does, and returns their number. Overlapping slices are
// copied with the builtin copy.
func Copy(dst, src []byte) int {
	n := min(len(dst), len(src))
	if !available || n < minNT || overlap(dst[:n], src[:n]) {
		return copy(dst, src)
	}
	copyNT(dst[:n], src[:n])
	return n
}

// copyNT copies src into dst (of the same length, not overlapping) with
// non-temporal stores for its 32-byte aligned middle, in blocks of 128.
func copyNT(dst, src []byte) {
	n := len(dst)
	head := int(-uintptr(unsafe.Pointer(unsafe.SliceData(dst))) & 31)
	head = min(head, n)
	copy(dst[:head], src[:head])
	body := (n - head) &^ 127
	if body > 0 {
		copyNTAVX2(&dst[head], &src[head], body)
	}
	copy(dst[head+body:], src[head+body:n])
}

// Fence orders the non-temporal stores this thread made before every store
// after it (SFENCE); a no-op where Copy uses none.
func Fence() {
	if available {
		sfence()
	}
}

func overlap(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a))), uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return pa < pb+uintptr(len(b)) && pb < pa+uintptr(len(a))
}
