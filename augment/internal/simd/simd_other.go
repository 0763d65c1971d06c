//go:build !amd64 || purego

package simd

const available = false

func vrowAVX2(dst []byte, src *byte, stride, n int, w *int16) { panic("unreachable") }
func hpairsAVX2(dst, row *byte, pos, bases *int32, masks *byte, w *int16, nblocks, npairs int) {
	panic("unreachable")
}
func hrow8AVX2(dst, row *byte, pos, bases *int32, masks *byte, nblocks int, w *int16, perm *int32) {
	panic("unreachable")
}
func yccRowAVX2(d, py, pcb, pcr *byte, n int, k *yccConsts) { panic("unreachable") }
