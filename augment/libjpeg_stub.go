//go:build !cgo || nolibjpeg

package augment

const libjpegAvailable = false

var libjpegName = ""

// ljDecoder is not built in this configuration.
type ljDecoder struct{ raw bool }

func ljOpen([]byte, Limits) (*ljDecoder, frame, error) { panic("augment: libjpeg not built") }

func (*ljDecoder) read([]int, bool) (*frame, error) { panic("augment: libjpeg not built") }

func (*ljDecoder) close() {}
