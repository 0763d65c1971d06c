package arrowio

import (
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
)

// WriteValues writes the values of a loaderd record batch to w, in the
// order clients compare streams by: the index column (uint64), the label
// column (int64), then the image values (ImagesOf), all little-endian as
// Arrow stores them. Hashing every batch of a stream in order gives a
// digest any Arrow client can reproduce: `loaderd fetch --digest` prints
// one, and the Python package's tests compare theirs with it.
func WriteValues(w io.Writer, rec arrow.RecordBatch) error {
	if rec == nil {
		return fmt.Errorf("%w: nil record", ErrSchema)
	}
	for _, c := range []struct {
		name string
		typ  arrow.DataType
	}{{ColIndex, arrow.PrimitiveTypes.Uint64}, {ColLabel, arrow.PrimitiveTypes.Int64}} {
		idx := rec.Schema().FieldIndices(c.name)
		if len(idx) != 1 {
			return fmt.Errorf("%w: %d %q columns", ErrSchema, len(idx), c.name)
		}
		col := rec.Column(idx[0])
		if !arrow.TypeEqual(col.DataType(), c.typ) {
			return fmt.Errorf("%w: %q column is %s, want %s", ErrSchema, c.name, col.DataType(), c.typ)
		}
		// Fixed-width values without nulls: the values buffer from the offset on.
		width := c.typ.(arrow.FixedWidthDataType).BitWidth() / 8
		vals := col.Data().Buffers()[1].Bytes()
		off := col.Data().Offset() * width
		if _, err := w.Write(vals[off : off+col.Len()*width]); err != nil {
			return err
		}
	}
	images, err := ImagesOf(rec)
	if err != nil {
		return err
	}
	_, err = w.Write(images)
	return err
}
