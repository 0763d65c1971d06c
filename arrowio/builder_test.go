package arrowio_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/loaderd/loaderd/arrowio"
)

func TestBatchBuilder(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	spec := arrowio.ImageSpec(3, 4, false)
	schema := testSchema(t, spec)
	bb, err := arrowio.NewBatchBuilder(mem, schema, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Release()

	// Reuse: three records in a row, the second one short, written with Next.
	for r, rows := range []int{4, 2, 4} {
		first := uint64(10 * r)
		b := testBatch(spec, rows, first)
		for p := range rows {
			if r == 1 {
				row, err := bb.Next(b.Index[p], b.Label[p])
				if err != nil {
					t.Fatal(err)
				}
				copy(row, b.Images[p])
				continue
			}
			if err := bb.Append(b.Index[p], b.Label[p], b.Images[p]); err != nil {
				t.Fatal(err)
			}
		}
		if bb.Len() != rows {
			t.Errorf("Len = %d, want %d", bb.Len(), rows)
		}
		if rows == 4 {
			if err := bb.Append(0, 0, b.Images[0]); !errors.Is(err, arrowio.ErrFull) {
				t.Errorf("Append past capacity = %v, want ErrFull", err)
			}
		}
		rec := bb.NewRecord()
		checkRecord(t, rec, rows, first)
		if !rec.Schema().Equal(schema) {
			t.Errorf("schema = %s", rec.Schema())
		}
		if err := validate(rec); err != nil {
			t.Error(err)
		}
		rec.Release()
	}

	if err := bb.Append(1, 2, make([]byte, spec.RowBytes()+1)); !errors.Is(err, arrowio.ErrBatch) {
		t.Errorf("Append(long image) = %v, want ErrBatch", err)
	}
	empty := bb.NewRecord()
	checkRecord(t, empty, 0, 0)
	empty.Release()

	// Rows appended and never turned into a record are freed by Release.
	if err := bb.Append(1, 2, make([]byte, spec.RowBytes())); err != nil {
		t.Fatal(err)
	}
}

// validate runs arrow's validation of the image column's storage and checks
// the lengths of the others.
func validate(rec arrow.RecordBatch) error {
	for _, c := range rec.Columns() {
		if c.Len() != int(rec.NumRows()) || c.NullN() != 0 {
			return errors.New("column length or nulls wrong")
		}
	}
	return rec.Column(2).(array.ExtensionArray).Storage().(*array.FixedSizeList).ValidateFull()
}

func TestNewBatchBuilderInvalid(t *testing.T) {
	schema := testSchema(t, arrowio.ImageSpec(2, 2, false))
	bad := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int8}}, nil)
	tests := []struct {
		name     string
		schema   *arrow.Schema
		capacity int
		want     error
	}{
		{name: "zero capacity", schema: schema, capacity: 0, want: arrowio.ErrBatch},
		{name: "foreign schema", schema: bad, capacity: 1, want: arrowio.ErrSchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := arrowio.NewBatchBuilder(nil, tc.schema, tc.capacity); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestImagesOf(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	spec := arrowio.ImageSpec(2, 2, true)
	schema := testSchema(t, spec)
	rec := buildRecord(t, mem, schema, 5, 0)
	defer rec.Release()
	all, err := arrowio.ImagesOf(rec)
	if err != nil {
		t.Fatal(err)
	}
	n := spec.RowBytes()
	if len(all) != 5*n {
		t.Fatalf("%d bytes, want %d", len(all), 5*n)
	}

	slice := rec.NewSlice(1, 4)
	defer slice.Release()
	got, err := arrowio.ImagesOf(slice)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, all[n:4*n]) || &got[0] != &all[n] {
		t.Error("ImagesOf(slice 1..4) is not rows 1..4 in place")
	}
	tensors := rec.Column(2).(*arrowio.FixedShapeTensorArray)
	if !bytes.Equal(tensors.TensorBytes(3), image(n, 3)) {
		t.Error("TensorBytes(3) differs")
	}

	noImage := array.NewRecordBatch(arrow.NewSchema(rec.Schema().Fields()[:2], nil), rec.Columns()[:2], 5)
	defer noImage.Release()
	if _, err := arrowio.ImagesOf(noImage); !errors.Is(err, arrowio.ErrSchema) {
		t.Errorf("ImagesOf(no image column) = %v, want ErrSchema", err)
	}
	wrong := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "image", Type: arrow.PrimitiveTypes.Uint64}}, nil), rec.Columns()[:1], 5)
	defer wrong.Release()
	if _, err := arrowio.ImagesOf(wrong); !errors.Is(err, arrowio.ErrSchema) {
		t.Errorf("ImagesOf(uint64 image) = %v, want ErrSchema", err)
	}
}
