package arrowio

import (
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// ErrFull reports an Append to a BatchBuilder that holds capacity rows.
var ErrFull = errors.New("arrowio: batch builder full")

// A BatchBuilder builds records of a loaderd schema, writing each row
// straight into one contiguous buffer per column. It is not safe for
// concurrent use.
type BatchBuilder struct {
	mem      memory.Allocator
	schema   *arrow.Schema
	typ      *FixedShapeTensorType
	spec     RowSpec
	rowBytes int
	capacity int

	n             int
	idx, lbl, img *memory.Buffer // nil until the first row of a record
}

// NewBatchBuilder returns a builder of records of schema with at most
// capacity rows each, allocating from mem (nil means the Go allocator).
func NewBatchBuilder(mem memory.Allocator, schema *arrow.Schema, capacity int) (*BatchBuilder, error) {
	spec, err := SpecOf(schema)
	if err != nil {
		return nil, err
	}
	if capacity < 1 {
		return nil, fmt.Errorf("%w: capacity %d", ErrBatch, capacity)
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return &BatchBuilder{
		mem:      mem,
		schema:   schema,
		typ:      schema.Field(2).Type.(*FixedShapeTensorType),
		spec:     spec,
		rowBytes: spec.RowBytes(),
		capacity: capacity,
	}, nil
}

// Len returns the number of rows appended since the last NewRecord.
func (b *BatchBuilder) Len() int { return b.n }

func (b *BatchBuilder) alloc() {
	if b.idx != nil {
		return
	}
	buf := func(n int) *memory.Buffer {
		m := memory.NewResizableBuffer(b.mem)
		m.Resize(n)
		return m
	}
	b.idx = buf(8 * b.capacity)
	b.lbl = buf(8 * b.capacity)
	b.img = buf(b.rowBytes * b.capacity)
}

// Next appends a row with the given index and label and returns its image
// bytes (RowBytes long, contents unspecified) for the caller to fill before
// the next call to NewRecord.
func (b *BatchBuilder) Next(index uint64, label int64) ([]byte, error) {
	if b.n == b.capacity {
		return nil, fmt.Errorf("%w: %d rows", ErrFull, b.capacity)
	}
	b.alloc()
	arrow.Uint64Traits.CastFromBytes(b.idx.Bytes())[b.n] = index
	arrow.Int64Traits.CastFromBytes(b.lbl.Bytes())[b.n] = label
	off := b.n * b.rowBytes
	b.n++
	return b.img.Bytes()[off : off+b.rowBytes : off+b.rowBytes], nil
}

// Append appends a row, copying image, which must be RowBytes long.
func (b *BatchBuilder) Append(index uint64, label int64, image []byte) error {
	if len(image) != b.rowBytes {
		return fmt.Errorf("%w: image has %d bytes, want %d", ErrBatch, len(image), b.rowBytes)
	}
	row, err := b.Next(index, label)
	if err != nil {
		return err
	}
	copy(row, image)
	return nil
}

// NewRecord returns a record of the rows appended since the last call and
// resets the builder, which can then be reused. The caller releases the
// record; it owns the buffers the rows were written to.
func (b *BatchBuilder) NewRecord() arrow.RecordBatch {
	b.alloc()
	n := b.n
	rec := newRecord(b.schema, b.typ, b.spec, n, b.idx, b.lbl, b.img)
	b.Release()
	return rec
}

// Release drops the rows appended since the last NewRecord and frees the
// builder's buffers. The builder stays usable.
func (b *BatchBuilder) Release() {
	for _, p := range []**memory.Buffer{&b.idx, &b.lbl, &b.img} {
		if *p != nil {
			(*p).Release()
			*p = nil
		}
	}
	b.n = 0
}

// ImagesOf returns the image values of rec, row after row, in place: the
// bytes of its "image" column, a fixed_shape_tensor (or its fixed-size list
// storage) without nulls.
func ImagesOf(rec arrow.RecordBatch) ([]byte, error) {
	if rec == nil {
		return nil, fmt.Errorf("%w: nil record", ErrSchema)
	}
	idx := rec.Schema().FieldIndices(ColImage)
	if len(idx) != 1 {
		return nil, fmt.Errorf("%w: %d %q columns", ErrSchema, len(idx), ColImage)
	}
	col := rec.Column(idx[0])
	if ext, ok := col.(array.ExtensionArray); ok {
		col = ext.Storage()
	}
	fsl, ok := col.(*array.FixedSizeList)
	if !ok {
		return nil, fmt.Errorf("%w: image column is %s", ErrSchema, col.DataType())
	}
	return fixedSizeListBytes(fsl)
}
