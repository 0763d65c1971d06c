package arrowio_test

import (
	"bytes"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/loaderd/loaderd/arrowio"
)

// pixel is the test pattern: byte k of the image of the sample with index i.
func pixel(i uint64, k int) byte { return byte(uint64(k)*7 + i*131 + 3) }

func image(rowBytes int, i uint64) []byte {
	b := make([]byte, rowBytes)
	for k := range b {
		b[k] = pixel(i, k)
	}
	return b
}

// testRows are the columns of a record batch.
type testRows struct {
	Index  []uint64
	Label  []int64
	Images [][]byte
}

// batchMessage is arrowio.BatchMessage of b's columns; a nil b has none.
func batchMessage(schema *arrow.Schema, b *testRows) (arrowio.Message, error) {
	if b == nil {
		b = &testRows{}
	}
	return arrowio.BatchMessage(schema, b.Index, b.Label, b.Images)
}

// testBatch returns a batch of rows rows of the pattern; row p holds sample
// first+p with label -p.
func testBatch(spec arrowio.RowSpec, rows int, first uint64) *testRows {
	b := &testRows{}
	for p := range rows {
		i := first + uint64(p)
		b.Index = append(b.Index, i)
		b.Label = append(b.Label, -int64(p))
		b.Images = append(b.Images, image(spec.RowBytes(), i))
	}
	return b
}

// buildRecord returns a record of testBatch's rows.
func buildRecord(t *testing.T, mem memory.Allocator, schema *arrow.Schema, rows int, first uint64) arrow.RecordBatch {
	t.Helper()
	spec, err := arrowio.SpecOf(schema)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := arrowio.NewBatchBuilder(mem, schema, max(rows, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Release()
	b := testBatch(spec, rows, first)
	for p := range rows {
		if err := bb.Append(b.Index[p], b.Label[p], b.Images[p]); err != nil {
			t.Fatal(err)
		}
	}
	return bb.NewRecord()
}

// checkRecord checks that rec holds testBatch(rows, first).
func checkRecord(t *testing.T, rec arrow.RecordBatch, rows int, first uint64) {
	t.Helper()
	if int(rec.NumRows()) != rows {
		t.Fatalf("rows = %d, want %d", rec.NumRows(), rows)
	}
	spec, err := arrowio.SpecOf(rec.Schema())
	if err != nil {
		t.Fatal(err)
	}
	index := rec.Column(0).(*array.Uint64)
	label := rec.Column(1).(*array.Int64)
	images, err := arrowio.ImagesOf(rec)
	if err != nil {
		t.Fatal(err)
	}
	n := spec.RowBytes()
	if len(images) != rows*n {
		t.Fatalf("images = %d bytes, want %d", len(images), rows*n)
	}
	for p := range rows {
		i := first + uint64(p)
		if index.Value(p) != i || label.Value(p) != -int64(p) {
			t.Errorf("row %d: index %d label %d, want %d %d", p, index.Value(p), label.Value(p), i, -p)
		}
		if !bytes.Equal(images[p*n:(p+1)*n], image(n, i)) {
			t.Errorf("row %d: image differs", p)
		}
	}
}
