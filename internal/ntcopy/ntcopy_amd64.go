//go:build !purego

package ntcopy

import "golang.org/x/sys/cpu"

var available = cpu.X86.HasAVX2

// copyNTAVX2 copies n bytes, a multiple of 128, from src to dst, 32-byte
// aligned, with non-temporal stores; it issues no fence.
//
//go:noescape
func copyNTAVX2(dst, src *byte, n int)

func sfence()
