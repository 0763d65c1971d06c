//go:build !purego

package simd

import "golang.org/x/sys/cpu"

var available = cpu.X86.HasAVX2

//go:noescape
func vrowAVX2(dst []byte, src *byte, stride, n int, w *int16)

//go:noescape
func hpairsAVX2(dst, row *byte, pos, bases *int32, masks *byte, w *int16, nblocks, npairs int)

//go:noescape
func hrow8AVX2(dst, row *byte, pos, bases *int32, masks *byte, nblocks int, w *int16, perm *int32)

//go:noescape
func yccRowAVX2(d, py, pcb, pcr *byte, n int, k *yccConsts)
