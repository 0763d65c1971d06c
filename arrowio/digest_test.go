package arrowio_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/loaderd/loaderd/arrowio"
)

func TestWriteValues(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	spec := arrowio.ImageSpec(2, 3, false)
	rec := buildRecord(t, mem, testSchema(t, spec), 5, 40)
	defer rec.Release()

	// want is rows lo..hi-1 of testBatch, as WriteValues lays them out.
	want := func(lo, hi int) []byte {
		var b []byte
		for p := lo; p < hi; p++ {
			b = binary.LittleEndian.AppendUint64(b, 40+uint64(p))
		}
		for p := lo; p < hi; p++ {
			b = binary.LittleEndian.AppendUint64(b, uint64(-int64(p)))
		}
		for p := lo; p < hi; p++ {
			b = append(b, image(spec.RowBytes(), 40+uint64(p))...)
		}
		return b
	}
	var got bytes.Buffer
	if err := arrowio.WriteValues(&got, rec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want(0, 5)) {
		t.Errorf("WriteValues = %x\nwant           %x", got.Bytes(), want(0, 5))
	}

	slice := rec.NewSlice(1, 4)
	defer slice.Release()
	got.Reset()
	if err := arrowio.WriteValues(&got, slice); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want(1, 4)) {
		t.Errorf("WriteValues(slice 1..4) = %x\nwant                     %x", got.Bytes(), want(1, 4))
	}

	swapped := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{
		{Name: arrowio.ColIndex, Type: arrow.PrimitiveTypes.Int64},
		{Name: arrowio.ColLabel, Type: arrow.PrimitiveTypes.Uint64},
		{Name: arrowio.ColImage, Type: rec.Schema().Field(2).Type},
	}, nil), []arrow.Array{rec.Column(1), rec.Column(0), rec.Column(2)}, 5)
	defer swapped.Release()
	if err := arrowio.WriteValues(&got, swapped); !errors.Is(err, arrowio.ErrSchema) {
		t.Errorf("WriteValues(index int64, label uint64) = %v, want ErrSchema", err)
	}
}
