package arrowio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"golang.org/x/sys/unix"
)

// Errors of the shard layout and the shard reader.
var (
	ErrLayout = errors.New("arrowio: cannot lay out shard")
	ErrShard  = errors.New("arrowio: invalid shard file")
)

// The value buffers of a record whose place in the IPC bytes is recorded.
const (
	bufIndex = iota
	bufLabel
	bufImage
	numBufs
)

// A segment is a run of IPC output: literal bytes (lit != nil), or the
// value buffer buf of the record, which the recorder does not copy.
type segment struct {
	off int64
	n   int64
	lit []byte
	buf int
}

// A recorder is the io.Writer an arrow-go IPC writer writes to when we lay
// out a record: it keeps the metadata and padding it is given and notes
// where the record's value buffers go, recognising them by slice identity,
// without copying (or touching) their bytes.
type recorder struct {
	pos     int64
	targets [numBufs][]byte
	segs    []segment
}

func (r *recorder) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n := int64(len(p))
	for i, t := range r.targets {
		if len(t) == len(p) && &t[0] == &p[0] {
			r.segs = append(r.segs, segment{off: r.pos, n: n, buf: i})
			r.pos += n
			return len(p), nil
		}
	}
	if k := len(r.segs) - 1; k >= 0 && r.segs[k].lit != nil {
		r.segs[k].lit = append(r.segs[k].lit, p...)
		r.segs[k].n += n
	} else {
		r.segs = append(r.segs, segment{off: r.pos, n: n, lit: bytes.Clone(p)})
	}
	r.pos += n
	return len(p), nil
}

// find returns the segment of buffer buf, or false if it was not written.
func (r *recorder) find(buf int) (segment, bool) {
	for _, s := range r.segs {
		if s.lit == nil && s.buf == buf {
			return s, true
		}
	}
	return segment{}, false
}

// zeroRecord is a record of rows zero rows of schema whose value buffers are
// the recorder's targets. The image buffer is an anonymous read-only
// mapping, so that no memory is committed however large it is. The returned
// func releases the record and unmaps the image buffer.
func zeroRecord(schema *arrow.Schema, spec RowSpec, rows int, r *recorder) (arrow.RecordBatch, func(), error) {
	typ, ok := schema.Field(2).Type.(*FixedShapeTensorType)
	if !ok {
		return nil, nil, fmt.Errorf("%w: image is %s", ErrSchema, schema.Field(2).Type)
	}
	rowBytes := spec.RowBytes()
	if rows < 0 || rows > math.MaxInt32 || rowBytes == 0 || int64(rows) > (1<<40)/int64(rowBytes) {
		return nil, nil, fmt.Errorf("%w: %d rows of %d bytes", ErrLayout, rows, rowBytes)
	}
	imgLen := int64(rows) * int64(rowBytes)
	img := []byte{}
	unmap := func() {}
	if imgLen > 0 {
		m, err := unix.Mmap(-1, 0, int(imgLen), unix.PROT_READ, unix.MAP_ANON|unix.MAP_PRIVATE)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: map %d bytes: %w", ErrLayout, imgLen, err)
		}
		img = m
		unmap = func() { _ = unix.Munmap(m) }
	}
	r.targets = [numBufs][]byte{
		bufIndex: make([]byte, rows*8),
		bufLabel: make([]byte, rows*8),
		bufImage: img,
	}
	rec := newRecord(schema, typ, spec, rows, memory.NewBufferBytes(r.targets[bufIndex]),
		memory.NewBufferBytes(r.targets[bufLabel]), memory.NewBufferBytes(img))
	return rec, func() { rec.Release(); unmap() }, nil
}

// newRecord returns a record of rows rows of schema over the given value
// buffers, which it retains.
func newRecord(schema *arrow.Schema, typ *FixedShapeTensorType, spec RowSpec, rows int, idx, lbl, img *memory.Buffer) arrow.RecordBatch {
	index := array.NewData(arrow.PrimitiveTypes.Uint64, rows, []*memory.Buffer{nil, idx}, nil, 0, 0)
	label := array.NewData(arrow.PrimitiveTypes.Int64, rows, []*memory.Buffer{nil, lbl}, nil, 0, 0)
	child := array.NewData(spec.valueType(), rows*(spec.RowBytes()/spec.ElemBytes()),
		[]*memory.Buffer{nil, img}, nil, 0, 0)
	storage := array.NewData(typ.StorageType(), rows, []*memory.Buffer{nil}, []arrow.ArrayData{child}, 0, 0)
	storageArr := array.MakeFromData(storage)
	cols := []arrow.Array{
		array.MakeFromData(index),
		array.MakeFromData(label),
		array.NewExtensionArrayWithStorage(typ, storageArr),
	}
	rec := array.NewRecordBatch(schema, cols, int64(rows))
	for _, c := range cols {
		c.Release()
	}
	storageArr.Release()
	for _, d := range []arrow.ArrayData{index, label, child, storage} {
		d.Release()
	}
	return rec
}

// ShardLayout is the byte layout of a shard file: an Arrow IPC file holding
// one record batch of Rows rows. It depends only on the schema and Rows, so
// it is known before any pixel exists: row p's image is the RowBytes bytes at
// ImageOffset+p*RowBytes, its index the 8 little-endian bytes at
// IndexOffset+8p, its label those at LabelOffset+8p.
type ShardLayout struct {
	Rows, RowBytes int
	Size           int64     // file size
	IndexOffset    int64     // of the index column's values
	LabelOffset    int64     // of the label column's values
	ImageOffset    int64     // of the image column's values
	segs           []segment // the file's bytes outside the value buffers; shared, read-only
}

// layoutCacheMax bounds the number of cached layouts and codecs.
const layoutCacheMax = 256

// layoutCache memoises NewShardLayout, a pure function of its arguments.
var layoutCache struct {
	sync.Mutex                         // guards m
	m          map[string]*ShardLayout // by the key NewShardLayout makes
}

// schemaKey identifies a schema's IPC encoding: its fields (the extension
// type's fingerprint includes the tensor metadata) and its metadata.
func schemaKey(schema *arrow.Schema) string {
	var b strings.Builder
	b.WriteString(schema.Fingerprint())
	md := schema.Metadata()
	for i, k := range md.Keys() {
		v := md.Values()[i]
		b.WriteString(strconv.Itoa(len(k)) + ":" + k + strconv.Itoa(len(v)) + ":" + v)
	}
	return b.String()
}

// NewShardLayout returns the layout of a shard of rows rows of schema.
// Layouts are cached per (schema, rows).
func NewShardLayout(schema *arrow.Schema, rows int) (*ShardLayout, error) {
	spec, err := SpecOf(schema)
	if err != nil {
		return nil, err
	}
	if rows < 1 {
		return nil, fmt.Errorf("%w: %d rows", ErrLayout, rows)
	}
	key := strconv.Itoa(rows) + "|" + schemaKey(schema)
	layoutCache.Lock()
	l, ok := layoutCache.m[key]
	layoutCache.Unlock()
	if !ok {
		if l, err = newShardLayout(schema, spec, rows); err != nil {
			return nil, err
		}
		layoutCache.Lock()
		if layoutCache.m == nil || len(layoutCache.m) >= layoutCacheMax {
			layoutCache.m = make(map[string]*ShardLayout)
		}
		layoutCache.m[key] = l
		layoutCache.Unlock()
	}
	c := *l
	return &c, nil
}

func newShardLayout(schema *arrow.Schema, spec RowSpec, rows int) (*ShardLayout, error) {
	var r recorder
	rec, release, err := zeroRecord(schema, spec, rows, &r)
	if err != nil {
		return nil, err
	}
	defer release()
	w, err := ipc.NewFileWriter(&r, ipc.WithSchema(schema))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLayout, err)
	}
	if err := w.Write(rec); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLayout, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLayout, err)
	}
	l := &ShardLayout{Rows: rows, RowBytes: spec.RowBytes(), Size: r.pos}
	for buf, off := range map[int]*int64{bufIndex: &l.IndexOffset, bufLabel: &l.LabelOffset, bufImage: &l.ImageOffset} {
		s, ok := r.find(buf)
		if !ok {
			return nil, fmt.Errorf("%w: buffer %d not written", ErrLayout, buf)
		}
		*off = s.off
	}
	for _, s := range r.segs {
		if s.lit != nil {
			l.segs = append(l.segs, s)
		}
	}
	return l, nil
}

// WriteSkeleton writes the shard file with every value zero into f, an
// empty file: the IPC framing, schema, record batch metadata and footer are
// written, the value buffers are left as holes, and f is truncated to Size
// bytes, so that the file is sparse. The file offset of f is not used.
func (l *ShardLayout) WriteSkeleton(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("arrowio: skeleton: %w", err)
	}
	for _, s := range l.segs {
		if _, err := f.WriteAt(s.lit, s.off); err != nil {
			return fmt.Errorf("arrowio: skeleton: %w", err)
		}
	}
	if err := f.Truncate(l.Size); err != nil {
		return fmt.Errorf("arrowio: skeleton: %w", err)
	}
	return nil
}

// Skeleton returns the bytes of the shard file with every value zero (for
// writers that do not work on an *os.File).
func (l *ShardLayout) Skeleton() []byte {
	b := make([]byte, l.Size)
	for _, s := range l.segs {
		copy(b[s.off:], s.lit)
	}
	return b
}

// Row returns the image bytes of row p within data, the bytes of the shard
// file (a mapping of it). p must be in [0, Rows) and len(data) = Size.
func (l *ShardLayout) Row(data []byte, p int) []byte {
	off := l.ImageOffset + int64(p)*int64(l.RowBytes)
	return data[off : off+int64(l.RowBytes) : off+int64(l.RowBytes)]
}

// SetIndex sets the index of row p within data.
func (l *ShardLayout) SetIndex(data []byte, p int, v uint64) {
	binary.LittleEndian.PutUint64(data[l.IndexOffset+8*int64(p):], v)
}

// SetLabel sets the label of row p within data.
func (l *ShardLayout) SetLabel(data []byte, p int, v int64) {
	binary.LittleEndian.PutUint64(data[l.LabelOffset+8*int64(p):], uint64(v))
}

// Index returns the index of row p within data.
func (l *ShardLayout) Index(data []byte, p int) uint64 {
	return binary.LittleEndian.Uint64(data[l.IndexOffset+8*int64(p):])
}

// Label returns the label of row p within data.
func (l *ShardLayout) Label(data []byte, p int) int64 {
	return int64(binary.LittleEndian.Uint64(data[l.LabelOffset+8*int64(p):]))
}

// Images returns the image bytes of all rows within data, row after row.
func (l *ShardLayout) Images(data []byte) []byte {
	end := l.ImageOffset + int64(l.Rows)*int64(l.RowBytes)
	return data[l.ImageOffset:end:end]
}

// validate checks that data has the layout's size and structure: every
// byte outside the value buffers is the one the layout writes.
func (l *ShardLayout) validate(data []byte) error {
	if int64(len(data)) != l.Size {
		return fmt.Errorf("%w: %d bytes, want %d", ErrShard, len(data), l.Size)
	}
	for _, s := range l.segs {
		if !bytes.Equal(data[s.off:s.off+s.n], s.lit) {
			return fmt.Errorf("%w: bytes %d..%d differ from the layout", ErrShard, s.off, s.off+s.n)
		}
	}
	return nil
}

// ShardView reads a shard file in place: rows are slices of its bytes.
type ShardView struct {
	l      *ShardLayout
	data   []byte
	schema *arrow.Schema
}

// OpenShard checks that data, the bytes of a shard file (usually a
// mapping), is a shard of rows rows of schema as NewShardLayout lays it out,
// and returns a view of it. Nothing is copied; data must outlive the view.
func OpenShard(data []byte, schema *arrow.Schema, rows int) (*ShardView, error) {
	l, err := NewShardLayout(schema, rows)
	if err != nil {
		return nil, err
	}
	if err := l.validate(data); err != nil {
		return nil, err
	}
	return &ShardView{l: l, data: data, schema: schema}, nil
}

// Rows returns the number of rows of the shard.
func (v *ShardView) Rows() int { return v.l.Rows }

// Layout returns the layout of the shard.
func (v *ShardView) Layout() *ShardLayout { c := *v.l; return &c }

// Row returns the image bytes of row p, in place. It panics if p is not in
// [0, Rows).
func (v *ShardView) Row(p int) []byte {
	v.check(p)
	return v.l.Row(v.data, p)
}

// Index returns the index of row p.
func (v *ShardView) Index(p int) uint64 {
	v.check(p)
	return binary.LittleEndian.Uint64(v.data[v.l.IndexOffset+8*int64(p):])
}

// Label returns the label of row p.
func (v *ShardView) Label(p int) int64 {
	v.check(p)
	return int64(binary.LittleEndian.Uint64(v.data[v.l.LabelOffset+8*int64(p):]))
}

// Images returns the image bytes of all rows, row after row, in place.
func (v *ShardView) Images() []byte { return v.l.Images(v.data) }

// Record returns the shard's record batch, whose buffers are the shard's
// bytes (zero copy): data must outlive it. The caller releases it.
func (v *ShardView) Record() arrow.RecordBatch {
	spec, _ := SpecOf(v.schema) // checked by OpenShard
	typ := v.schema.Field(2).Type.(*FixedShapeTensorType)
	rows := int64(v.l.Rows)
	return newRecord(v.schema, typ, spec, v.l.Rows,
		memory.NewBufferBytes(v.data[v.l.IndexOffset:v.l.IndexOffset+8*rows]),
		memory.NewBufferBytes(v.data[v.l.LabelOffset:v.l.LabelOffset+8*rows]),
		memory.NewBufferBytes(v.Images()))
}

func (v *ShardView) check(p int) {
	if p < 0 || p >= v.l.Rows {
		panic(fmt.Sprintf("arrowio: row %d out of range [0,%d)", p, v.l.Rows))
	}
}

var _ io.Writer = (*recorder)(nil)
