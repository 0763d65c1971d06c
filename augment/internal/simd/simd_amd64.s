//go:build !purego

#include "textflag.h"

// The AVX2 kernels of simd.go. Each computes exactly what its Go
// counterpart in package augment computes, in 32-bit integer
// arithmetic: weights are int16 (14-bit fixed point, non-negative, summing to
// 1<<14), samples bytes, so the sums never saturate and the packing
// instructions never clamp where Go would not.

// func vrowAVX2(dst []byte, src *byte, stride, n int, w *int16)
//
// dst[x] = (1<<13 + sum_k src[k*stride+x]*w[k]) >> 14 for x < len(dst),
// k < n; len(dst) >= 16, n >= 1. Blocks of 16 columns; the last block is
// moved back to end at len(dst), recomputing some columns.
TEXT ·vrowAVX2(SB), NOSPLIT, $0-56
	MOVQ dst_base+0(FP), DI
	MOVQ dst_len+8(FP), CX
	MOVQ src+24(FP), SI
	MOVQ stride+32(FP), DX
	MOVQ n+40(FP), R8
	MOVQ w+48(FP), R9
	MOVL $8192, AX
	MOVD AX, X15
	VPBROADCASTD X15, Y15 // 1<<13, the rounding
	VPXOR Y14, Y14, Y14
	MOVQ CX, R12
	SUBQ $16, R12 // the last block's start
	XORQ BX, BX

vblock:
	VMOVDQA Y15, Y0 // columns 0-3 and 8-11 of the block
	VMOVDQA Y15, Y1 // columns 4-7 and 12-15
	LEAQ    (SI)(BX*1), R10
	MOVQ    R9, R11
	MOVQ    R8, R13

vpair:
	CMPQ         R13, $2
	JLT          vodd
	VPMOVZXBW    (R10), Y2       // row k
	VPMOVZXBW    (R10)(DX*1), Y3 // row k+1
	VPBROADCASTD (R11), Y4       // w[k], w[k+1]
	VPUNPCKLWD   Y3, Y2, Y5
	VPUNPCKHWD   Y3, Y2, Y6
	VPMADDWD     Y4, Y5, Y5
	VPMADDWD     Y4, Y6, Y6
	VPADDD       Y5, Y0, Y0
	VPADDD       Y6, Y1, Y1
	LEAQ         (R10)(DX*2), R10
	ADDQ         $4, R11
	SUBQ         $2, R13
	JMP          vpair

vodd:
	TESTQ        R13, R13
	JZ           vstore
	VPMOVZXBW    (R10), Y2
	MOVWLZX      (R11), AX
	MOVD         AX, X4
	VPBROADCASTD X4, Y4 // w[n-1], 0
	VPUNPCKLWD   Y14, Y2, Y5
	VPUNPCKHWD   Y14, Y2, Y6
	VPMADDWD     Y4, Y5, Y5
	VPMADDWD     Y4, Y6, Y6
	VPADDD       Y5, Y0, Y0
	VPADDD       Y6, Y1, Y1

vstore:
	VPSRAD    $14, Y0, Y0
	VPSRAD    $14, Y1, Y1
	VPACKSSDW Y1, Y0, Y0   // columns 0-7 | 8-15, int16
	VPACKUSWB Y0, Y0, Y0
	VPERMQ    $0x08, Y0, Y0
	VMOVDQU   X0, (DI)(BX*1)
	ADDQ      $16, BX
	CMPQ      BX, CX
	JGE       vdone
	CMPQ      BX, R12
	JLE       vblock
	MOVQ      R12, BX
	JMP       vblock

vdone:
	VZEROUPPER
	RET

// func hpairsAVX2(dst, row *byte, pos, bases *int32, masks *byte, w *int16, nblocks, npairs int)
//
// For each block b < nblocks of 8 outputs from pos[b]: the 16 bytes of row
// at bases[2b] serve outputs 0-3, those at bases[2b+1] outputs 4-7 (a
// 128-bit lane each). Pair j < npairs of a block gathers with its 32-byte
// VPSHUFB mask two samples of each output as zero-extended words and
// multiplies them with its 16 weights (VPMADDWD): the sums are the outputs'
// in order, (1<<13 + sum) >> 14. masks and w hold npairs*32 bytes a block.
TEXT ·hpairsAVX2(SB), NOSPLIT, $0-64
	MOVQ    dst+0(FP), DI
	MOVQ    row+8(FP), SI
	MOVQ    pos+16(FP), R10
	MOVQ    bases+24(FP), R11
	MOVQ    masks+32(FP), R14
	MOVQ    w+40(FP), R9
	MOVQ    nblocks+48(FP), CX
	MOVQ    npairs+56(FP), R8
	MOVL    $8192, AX
	MOVD    AX, X15
	VPBROADCASTD X15, Y15

hpblock:
	MOVL        (R10), BX
	MOVL        (R11), AX
	MOVL        4(R11), DX
	VMOVDQU     (SI)(AX*1), X3
	VINSERTI128 $1, (SI)(DX*1), Y3, Y3 // outputs 0-3 | 4-7
	VMOVDQA     Y15, Y0
	MOVQ        R8, R13

hppair:
	VPSHUFB     (R14), Y3, Y4 // two samples of each output, as words
	VPMADDWD    (R9), Y4, Y4
	VPADDD      Y4, Y0, Y0
	ADDQ        $32, R14
	ADDQ        $32, R9
	DECQ        R13
	JNZ         hppair
	VPSRAD      $14, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPACKSSDW   X1, X0, X0
	VPACKUSWB   X0, X0, X0
	MOVQ        X0, (DI)(BX*1)
	ADDQ        $4, R10
	ADDQ        $8, R11
	DECQ        CX
	JNZ         hpblock
	VZEROUPPER
	RET

// func hrow8AVX2(dst *byte, row *byte, pos, bases *int32, masks *byte, nblocks int, w *int16, perm *int32)
//
// For each block b < nblocks of 8 outputs from pos[b]: output pos[b]+j
// (j < 8) is (1<<13 + sum_k win[mask[8j+k]]*w[8(pos[b]+j)+k]) >> 14, k < 8,
// where win is the 16 bytes of row at bases[4b+j/2], masks 64 bytes a block
// (VPSHUFB: 0x80 reads 0). perm is {0, 4, 1, 5, 2, 6, 3, 7}.
TEXT ·hrow8AVX2(SB), NOSPLIT, $0-64
	MOVQ    dst+0(FP), DI
	MOVQ    row+8(FP), SI
	MOVQ    pos+16(FP), R10
	MOVQ    bases+24(FP), R11
	MOVQ    masks+32(FP), R14
	MOVQ    nblocks+40(FP), CX
	MOVQ    w+48(FP), R9
	MOVQ    perm+56(FP), AX
	VMOVDQU (AX), Y14
	MOVL    $8192, AX
	MOVD    AX, X15
	VPBROADCASTD X15, Y15

h8block:
	MOVL        (R10), BX
	MOVL        (R11), AX
	MOVL        4(R11), DX
	VMOVDQU     (SI)(AX*1), X3
	VINSERTI128 $1, (SI)(DX*1), Y3, Y3
	MOVL        8(R11), AX
	MOVL        12(R11), DX
	VMOVDQU     (SI)(AX*1), X7
	VINSERTI128 $1, (SI)(DX*1), Y7, Y7
	VPSHUFB     (R14), Y3, Y3      // 8 samples of outputs 0 1 | 2 3
	VPSHUFB     32(R14), Y7, Y7    // 4 5 | 6 7
	VPMOVZXBW   X3, Y4             // outputs 0 | 1
	VEXTRACTI128 $1, Y3, X5
	VPMOVZXBW   X5, Y5             // 2 | 3
	VPMOVZXBW   X7, Y8             // 4 | 5
	VEXTRACTI128 $1, Y7, X9
	VPMOVZXBW   X9, Y9             // 6 | 7
	MOVQ        BX, AX
	SHLQ        $4, AX
	VPMADDWD    (R9)(AX*1), Y4, Y4
	VPMADDWD    32(R9)(AX*1), Y5, Y5
	VPMADDWD    64(R9)(AX*1), Y8, Y8
	VPMADDWD    96(R9)(AX*1), Y9, Y9
	VPHADDD     Y5, Y4, Y4 // 0 0 2 2 | 1 1 3 3
	VPHADDD     Y9, Y8, Y8 // 4 4 6 6 | 5 5 7 7
	VPHADDD     Y8, Y4, Y4 // 0 2 4 6 | 1 3 5 7
	VPERMD      Y4, Y14, Y4
	VPADDD      Y15, Y4, Y4
	VPSRAD      $14, Y4, Y4
	VEXTRACTI128 $1, Y4, X5
	VPACKSSDW   X5, X4, X4
	VPACKUSWB   X4, X4, X4
	MOVQ        X4, (DI)(BX*1)
	ADDQ        $4, R10
	ADDQ        $16, R11
	ADDQ        $64, R14
	DECQ        CX
	JNZ         h8block
	VZEROUPPER
	RET

// func yccRowAVX2(d, py, pcb, pcr *byte, n int, k *yccConsts)
//
// yccRow for n >= 16 pixels: d[3x:3x+3] gets R G B of pixel x from py[x],
// pcb[x], pcr[x] with image/color's integer conversion. Blocks of 16
// pixels, the last moved back.
TEXT ·yccRowAVX2(SB), NOSPLIT, $0-48
	MOVQ d+0(FP), DI
	MOVQ py+8(FP), SI
	MOVQ pcb+16(FP), R8
	MOVQ pcr+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), AX
	VPBROADCASTD 0(AX), Y8     // 128
	VPBROADCASTD 4(AX), Y9     // 0x10101
	VPBROADCASTD 8(AX), Y10    // 91881 (Cr in R)
	VPBROADCASTD 12(AX), Y11   // -22554 (Cb in G)
	VPBROADCASTD 16(AX), Y12   // -46802 (Cr in G)
	VPBROADCASTD 20(AX), Y13   // 116130 (Cb in B)
	LEAQ 32(AX), R11           // the 9 shuffle masks
	MOVQ CX, R12
	SUBQ $16, R12
	XORQ BX, BX

cblock:
	// pixels 0-7
	VPMOVZXBD (SI)(BX*1), Y0
	VPMOVZXBD (R8)(BX*1), Y1
	VPMOVZXBD (R9)(BX*1), Y2
	VPMULLD   Y9, Y0, Y0 // yy
	VPSUBD    Y8, Y1, Y1 // cb-128
	VPSUBD    Y8, Y2, Y2 // cr-128
	VPMULLD   Y10, Y2, Y3
	VPADDD    Y0, Y3, Y3 // r
	VPMULLD   Y11, Y1, Y4
	VPMULLD   Y12, Y2, Y5
	VPADDD    Y0, Y4, Y4
	VPADDD    Y5, Y4, Y4 // g
	VPMULLD   Y13, Y1, Y5
	VPADDD    Y0, Y5, Y5 // b
	VPSRAD    $16, Y3, Y3
	VPSRAD    $16, Y4, Y4
	VPSRAD    $16, Y5, Y5
	// pixels 8-15
	VPMOVZXBD 8(SI)(BX*1), Y0
	VPMOVZXBD 8(R8)(BX*1), Y1
	VPMOVZXBD 8(R9)(BX*1), Y2
	VPMULLD   Y9, Y0, Y0
	VPSUBD    Y8, Y1, Y1
	VPSUBD    Y8, Y2, Y2
	VPMULLD   Y10, Y2, Y6
	VPADDD    Y0, Y6, Y6 // r
	VPMULLD   Y11, Y1, Y7
	VPMULLD   Y12, Y2, Y2
	VPADDD    Y0, Y7, Y7
	VPADDD    Y2, Y7, Y7 // g
	VPMULLD   Y13, Y1, Y1
	VPADDD    Y0, Y1, Y1 // b
	VPSRAD    $16, Y6, Y6
	VPSRAD    $16, Y7, Y7
	VPSRAD    $16, Y1, Y1
	// To bytes: int16 (exact), then unsigned saturation = the clamp.
	VPACKSSDW Y6, Y3, Y3 // r 0-3 8-11 | 4-7 12-15
	VPACKSSDW Y7, Y4, Y4 // g
	VPACKSSDW Y1, Y5, Y5 // b
	VPERMQ    $0xD8, Y3, Y3 // r 0-7 | 8-15
	VPERMQ    $0xD8, Y4, Y4
	VPERMQ    $0xD8, Y5, Y5
	VPACKUSWB Y4, Y3, Y3    // r 0-7, g 0-7 | r 8-15, g 8-15
	VPACKUSWB Y5, Y5, Y5    // b 0-7, b 0-7 | b 8-15, b 8-15
	VPERMQ    $0xD8, Y3, Y3 // r 0-15 | g 0-15
	VPERMQ    $0x08, Y5, Y5 // b 0-15 | -
	VEXTRACTI128 $1, Y3, X4 // g
	// Interleave: three 16-byte stores of R G B R G B ...
	LEAQ      (BX)(BX*2), AX
	VPSHUFB   0(R11), X3, X0
	VPSHUFB   16(R11), X4, X1
	VPSHUFB   32(R11), X5, X2
	VPOR      X1, X0, X0
	VPOR      X2, X0, X0
	VMOVDQU   X0, (DI)(AX*1)
	VPSHUFB   48(R11), X3, X0
	VPSHUFB   64(R11), X4, X1
	VPSHUFB   80(R11), X5, X2
	VPOR      X1, X0, X0
	VPOR      X2, X0, X0
	VMOVDQU   X0, 16(DI)(AX*1)
	VPSHUFB   96(R11), X3, X0
	VPSHUFB   112(R11), X4, X1
	VPSHUFB   128(R11), X5, X2
	VPOR      X1, X0, X0
	VPOR      X2, X0, X0
	VMOVDQU   X0, 32(DI)(AX*1)
	ADDQ      $16, BX
	CMPQ      BX, CX
	JGE       cdone
	CMPQ      BX, R12
	JLE       cblock
	MOVQ      R12, BX
	JMP       cblock

cdone:
	VZEROUPPER
	RET
