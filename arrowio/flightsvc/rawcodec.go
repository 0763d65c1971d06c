package flightsvc

import (
	"encoding/binary"
	"errors"
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// errMalformed reports a FlightData or IPC header the raw reader cannot parse.
var errMalformed = errors.New("flightsvc: malformed FlightData")

// rawFlightData is a FlightData read without copying its body: the header
// is kept, the body only measured.
type rawFlightData struct {
	header  []byte
	bodyLen int64
}

// rawCodec is the client codec of raw Fetch: it decodes *rawFlightData by
// walking the protobuf fields over gRPC's buffers, and delegates the rest.
type rawCodec struct{}

func (rawCodec) Name() string { return proto.Name }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(proto.Name).Marshal(v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawFlightData)
	if !ok {
		return encoding.GetCodecV2(proto.Name).Unmarshal(data, v)
	}
	*m = rawFlightData{}
	r := pieceReader{bufs: data}
	for !r.done() {
		tag, err := r.uvarint()
		if err != nil {
			return err
		}
		field, wire := tag>>3, tag&7
		switch wire {
		case 0:
			if _, err := r.uvarint(); err != nil {
				return err
			}
		case 1:
			err = r.skip(8)
		case 5:
			err = r.skip(4)
		case 2:
			n, err := r.uvarint()
			if err != nil {
				return err
			}
			if n > uint64(r.left()) {
				return fmt.Errorf("%w: field %d is %d bytes, %d left", errMalformed, field, n, r.left())
			}
			switch field {
			case 2:
				m.header = make([]byte, n)
				err = r.read(m.header)
			case 1000:
				m.bodyLen += int64(n)
				err = r.skip(int(n))
			default:
				err = r.skip(int(n))
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: wire type %d", errMalformed, wire)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// pieceReader reads across the buffers of a BufferSlice without joining them.
type pieceReader struct {
	bufs  mem.BufferSlice
	i     int // current buffer
	off   int // offset in it
	nread int
}

func (r *pieceReader) left() int { return r.bufs.Len() - r.nread }

func (r *pieceReader) done() bool { return r.left() == 0 }

func (r *pieceReader) next() ([]byte, bool) {
	for r.i < len(r.bufs) {
		b := r.bufs[r.i].ReadOnlyData()
		if r.off < len(b) {
			return b[r.off:], true
		}
		r.i++
		r.off = 0
	}
	return nil, false
}

func (r *pieceReader) advance(n int) {
	r.off += n
	r.nread += n
}

func (r *pieceReader) uvarint() (uint64, error) {
	var x uint64
	for shift := uint(0); shift < 64; shift += 7 {
		b, ok := r.next()
		if !ok {
			return 0, fmt.Errorf("%w: truncated varint", errMalformed)
		}
		c := b[0]
		r.advance(1)
		x |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return x, nil
		}
	}
	return 0, fmt.Errorf("%w: varint overflow", errMalformed)
}

func (r *pieceReader) skip(n int) error {
	for n > 0 {
		b, ok := r.next()
		if !ok {
			return fmt.Errorf("%w: truncated field", errMalformed)
		}
		k := min(n, len(b))
		r.advance(k)
		n -= k
	}
	return nil
}

func (r *pieceReader) read(dst []byte) error {
	for len(dst) > 0 {
		b, ok := r.next()
		if !ok {
			return fmt.Errorf("%w: truncated field", errMalformed)
		}
		k := copy(dst, b)
		r.advance(k)
		dst = dst[k:]
	}
	return nil
}

// IPC MessageHeader union values (format/Message.fbs).
const (
	headerSchema      = 1
	headerRecordBatch = 3
)

// recordBatchRows reads an IPC Message flatbuffer and returns the row count
// when it is a RecordBatch.
func recordBatchRows(h []byte) (rows int64, isBatch bool, err error) {
	msg, err := fbRoot(h)
	if err != nil {
		return 0, false, err
	}
	typ, ok, err := msg.field(1, 1)
	if err != nil || !ok || h[typ] != headerRecordBatch {
		return 0, false, err
	}
	hdr, err := msg.table(2)
	if err != nil {
		return 0, false, err
	}
	at, ok, err := hdr.field(0, 8)
	if err != nil || !ok {
		return 0, true, err
	}
	return int64(binary.LittleEndian.Uint64(h[at:])), true, nil
}

// fbTable is a flatbuffer table at pos in buf.
type fbTable struct {
	buf []byte
	pos int
}

func fbRoot(buf []byte) (fbTable, error) {
	if len(buf) < 4 {
		return fbTable{}, fmt.Errorf("%w: IPC header of %d bytes", errMalformed, len(buf))
	}
	return fbAt(buf, int(binary.LittleEndian.Uint32(buf)))
}

func fbAt(buf []byte, pos int) (fbTable, error) {
	if pos < 0 || pos+4 > len(buf) {
		return fbTable{}, fmt.Errorf("%w: table offset %d", errMalformed, pos)
	}
	return fbTable{buf: buf, pos: pos}, nil
}

// field returns the position of field i (size bytes), ok false if absent.
func (t fbTable) field(i, size int) (int, bool, error) {
	vt := t.pos - int(int32(binary.LittleEndian.Uint32(t.buf[t.pos:])))
	if vt < 0 || vt+4 > len(t.buf) {
		return 0, false, fmt.Errorf("%w: vtable offset %d", errMalformed, vt)
	}
	vtLen := int(binary.LittleEndian.Uint16(t.buf[vt:]))
	slot := 4 + 2*i
	if slot+2 > vtLen || vt+slot+2 > len(t.buf) {
		return 0, false, nil
	}
	off := int(binary.LittleEndian.Uint16(t.buf[vt+slot:]))
	if off == 0 {
		return 0, false, nil
	}
	at := t.pos + off
	if at+size > len(t.buf) {
		return 0, false, fmt.Errorf("%w: field %d at %d", errMalformed, i, at)
	}
	return at, true, nil
}

// table follows the offset in field i to a sub-table.
func (t fbTable) table(i int) (fbTable, error) {
	at, ok, err := t.field(i, 4)
	if err != nil {
		return fbTable{}, err
	}
	if !ok {
		return fbTable{}, fmt.Errorf("%w: missing table field %d", errMalformed, i)
	}
	return fbAt(t.buf, at+int(binary.LittleEndian.Uint32(t.buf[at:])))
}
