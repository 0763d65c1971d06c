//go:build !cgo || nolibwebp

package augment

const libwebpAvailable = false

var libwebpName = ""

func decodeWebPC([]byte, Limits) (*frame, error) { panic("augment: libwebp not built") }
