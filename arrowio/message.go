package arrowio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/endian"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// ErrBatch reports rows that do not fit their schema.
var ErrBatch = errors.New("arrowio: invalid batch")

// A Message is one encapsulated IPC message split for Flight: Header is the
// flatbuffer Message (FlightData.DataHeader) and the concatenation of Body
// is the message body (FlightData.DataBody), BodyLen bytes long. Header and
// the padding pieces of Body are shared and must not be modified; the other
// pieces alias the columns they were made from.
type Message struct {
	Header  []byte
	Body    [][]byte
	BodyLen int64
}

// WriteTo writes m in the IPC encapsulated message format (continuation
// marker, metadata length, metadata padded to 8 bytes, body), as one message
// of an IPC stream. An IPC stream is the schema message followed by record
// batch messages and, optionally, the end-of-stream marker 0xFFFFFFFF 0.
func (m Message) WriteTo(w io.Writer) (int64, error) {
	padded := (len(m.Header) + 8 + 7) &^ 7
	var prefix [8]byte
	binary.LittleEndian.PutUint32(prefix[:4], 0xFFFFFFFF)
	binary.LittleEndian.PutUint32(prefix[4:], uint32(padded-8))
	var n int64
	for _, p := range append([][]byte{prefix[:], m.Header, make([]byte, padded-8-len(m.Header))}, m.Body...) {
		k, err := w.Write(p)
		n += int64(k)
		if err != nil {
			return n, fmt.Errorf("arrowio: write message: %w", err)
		}
	}
	return n, nil
}

// msgLayout is the record batch message of a given row count: its header
// and where the body's pieces come from.
type msgLayout struct {
	header  []byte
	body    []segment // offsets relative to the body
	bodyLen int64
}

// A codec holds what the send path derives from a schema: its schema
// message, and the record batch messages of its row spec.
type codec struct {
	rowBytes  int
	schemaMsg []byte     // the IPC schema message, metadata included
	batches   *batchMsgs // shared by every schema of the same row spec
}

// batchMsgs are the record batch messages of one row spec, by row count. A
// record batch message holds no schema metadata, so every schema of a spec
// (one per stream: the metadata names the dataset and epoch) shares them.
type batchMsgs struct {
	schema *arrow.Schema // NewSchema(spec, nil): lays the messages out
	spec   RowSpec

	mu   sync.Mutex         // guards msgs
	msgs map[int]*msgLayout // by row count
}

// codecs memoises codecs per schema (by pointer: a Source hands out the same
// schema for a stream) and batch messages per row spec.
var codecs struct {
	sync.Mutex // guards the maps
	bySchema   map[*arrow.Schema]*codec
	bySpec     map[string]*batchMsgs // by specKey
}

// specKey names what a record batch message depends on: the image
// tensor's element type and size (dimension names and order do not
// change the bytes).
func specKey(spec RowSpec) string {
	return fmt.Sprintf("%d/%v", spec.RowBytes(), spec.Float32)
}

func codecOf(schema *arrow.Schema) (*codec, error) {
	codecs.Lock()
	c, ok := codecs.bySchema[schema]
	codecs.Unlock()
	if ok {
		return c, nil
	}
	spec, err := SpecOf(schema)
	if err != nil {
		return nil, err
	}
	schemaMsg, err := encodeSchema(schema)
	if err != nil {
		return nil, err
	}
	key := specKey(spec)
	codecs.Lock()
	defer codecs.Unlock()
	bm := codecs.bySpec[key]
	if bm == nil {
		base, err := NewSchema(spec, nil)
		if err != nil {
			return nil, err
		}
		bm = &batchMsgs{schema: base, spec: spec, msgs: make(map[int]*msgLayout)}
		if codecs.bySpec == nil || len(codecs.bySpec) >= layoutCacheMax {
			codecs.bySpec = make(map[string]*batchMsgs)
		}
		codecs.bySpec[key] = bm
	}
	c = &codec{rowBytes: spec.RowBytes(), schemaMsg: schemaMsg, batches: bm}
	if codecs.bySchema == nil || len(codecs.bySchema) >= layoutCacheMax {
		codecs.bySchema = make(map[*arrow.Schema]*codec)
	}
	codecs.bySchema[schema] = c
	return c, nil
}

// encodeSchema returns the IPC schema message of schema.
func encodeSchema(schema *arrow.Schema) ([]byte, error) {
	pr := &payloadRecorder{body: &recorder{}}
	w := ipc.NewWriterWithPayloadWriter(pr, ipc.WithSchema(schema))
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("arrowio: encode schema: %w", err)
	}
	if len(pr.metas) != 1 {
		return nil, fmt.Errorf("arrowio: encode schema: %d messages, want 1", len(pr.metas))
	}
	return pr.metas[0], nil
}

// payloadRecorder is an ipc.PayloadWriter that keeps the payloads' metadata
// and lays out their bodies, as Flight's writer would send them.
type payloadRecorder struct {
	metas  [][]byte
	bodies []*recorder
	body   *recorder // the targets
}

func (*payloadRecorder) Start() error { return nil }
func (*payloadRecorder) Close() error { return nil }

func (p *payloadRecorder) WritePayload(pl ipc.Payload) error {
	meta := pl.Meta()
	p.metas = append(p.metas, bytes.Clone(meta.Bytes()))
	meta.Release()
	r := &recorder{targets: p.body.targets}
	if err := pl.SerializeBody(r); err != nil {
		return err
	}
	p.bodies = append(p.bodies, r)
	return nil
}

// layout returns the record batch message of rows rows, computing it with
// arrow-go's writer on first use.
func (b *batchMsgs) layout(rows int) (*msgLayout, error) {
	b.mu.Lock()
	m, ok := b.msgs[rows]
	b.mu.Unlock()
	if ok {
		return m, nil
	}
	pr := &payloadRecorder{body: &recorder{}}
	rec, release, err := zeroRecord(b.schema, b.spec, rows, pr.body)
	if err != nil {
		return nil, err
	}
	defer release()
	w := ipc.NewWriterWithPayloadWriter(pr, ipc.WithSchema(b.schema))
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("arrowio: encode %d rows: %w", rows, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("arrowio: encode %d rows: %w", rows, err)
	}
	if len(pr.metas) != 2 {
		return nil, fmt.Errorf("arrowio: encode %d rows: %d messages, want 2", rows, len(pr.metas))
	}
	body := pr.bodies[1]
	m = &msgLayout{header: pr.metas[1], body: body.segs, bodyLen: body.pos}
	b.mu.Lock()
	if len(b.msgs) >= layoutCacheMax {
		clear(b.msgs)
	}
	b.msgs[rows] = m
	b.mu.Unlock()
	return m, nil
}

// SchemaMessage returns the IPC schema message of schema, the DataHeader of
// the first FlightData of a stream (what flight.NewRecordWriter sends). The
// returned bytes are shared and must not be modified.
func SchemaMessage(schema *arrow.Schema) ([]byte, error) {
	c, err := codecOf(schema)
	if err != nil {
		return nil, err
	}
	return c.schemaMsg, nil
}

// BatchMessage returns the IPC record batch message of the rows given by
// their columns: index, label and images[i], the image tensor of row i
// (RowBytes long, in the layout of the schema's image column). The header,
// the same for every batch of the schema with as many rows, is cached; the
// body pieces are the index and label values and images as they are, with
// padding: no pixel is copied, and the pieces alias the arguments. The
// three columns must have the same length and every image must be RowBytes
// long.
func BatchMessage(schema *arrow.Schema, index []uint64, label []int64, images [][]byte) (Message, error) {
	c, err := codecOf(schema)
	if err != nil {
		return Message{}, err
	}
	rows := len(index)
	if len(label) != rows || len(images) != rows {
		return Message{}, fmt.Errorf("%w: %d indexes, %d labels, %d images", ErrBatch, rows, len(label), len(images))
	}
	for i, img := range images {
		if len(img) != c.rowBytes {
			return Message{}, fmt.Errorf("%w: image %d has %d bytes, want %d", ErrBatch, i, len(img), c.rowBytes)
		}
	}
	m, err := c.batches.layout(rows)
	if err != nil {
		return Message{}, err
	}
	body := make([][]byte, 0, len(m.body)+rows)
	for _, s := range m.body {
		switch {
		case s.lit != nil:
			body = append(body, s.lit)
		case s.buf == bufIndex:
			body = append(body, u64Bytes(index))
		case s.buf == bufLabel:
			body = append(body, i64Bytes(label))
		case s.buf == bufImage:
			body = append(body, images...)
		}
	}
	return Message{Header: m.header, Body: body, BodyLen: m.bodyLen}, nil
}

// BatchMessageSize returns the bytes of the IPC record batch message of
// rows rows of schema: its flatbuffer header and its body, padding
// included (what BatchMessage gives for that many rows, and what an IPC
// reader must hold at once).
func BatchMessageSize(schema *arrow.Schema, rows int) (int64, error) {
	c, err := codecOf(schema)
	if err != nil {
		return 0, err
	}
	m, err := c.batches.layout(rows)
	if err != nil {
		return 0, err
	}
	return int64(len(m.header)) + m.bodyLen, nil
}

// MaxBatchRows returns the most rows of schema, up to most, whose record
// batch message (BatchMessageSize) is at most limit bytes; 0 when not even
// one row fits. The size grows by the row's bytes per row, give or take the
// padding of each buffer, so it starts from that estimate and steps to the
// exact count.
func MaxBatchRows(schema *arrow.Schema, limit int64, most int) (int, error) {
	if most < 1 {
		return 0, nil
	}
	size := func(rows int) (int64, error) { return BatchMessageSize(schema, rows) }
	one, err := size(1)
	if err != nil || one > limit {
		return 0, err
	}
	two, err := size(2)
	if err != nil {
		return 0, err
	}
	rows := int(min(int64(most), 1+(limit-one)/max(1, two-one)))
	for rows > 1 {
		s, err := size(rows)
		if err != nil {
			return 0, err
		}
		if s <= limit {
			break
		}
		rows--
	}
	for ; rows < most; rows++ {
		s, err := size(rows + 1)
		if err != nil {
			return 0, err
		}
		if s > limit {
			break
		}
	}
	return rows, nil
}

// u64Bytes returns the little-endian bytes of v, in place where the machine
// is little-endian.
func u64Bytes(v []uint64) []byte {
	if endian.IsBigEndian {
		out := make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(out[8*i:], x)
		}
		return out
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 8*len(v))
}

func i64Bytes(v []int64) []byte {
	return u64Bytes(unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(v))), len(v)))
}
