//go:build !amd64 || purego

package ntcopy

const available = false

func copyNTAVX2(dst, src *byte, n int) { panic("unreachable") }
func sfence()                          { panic("unreachable") }
