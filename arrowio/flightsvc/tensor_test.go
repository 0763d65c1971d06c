package flightsvc

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"gorgonia.org/tensor"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
)

// buildTensorRecord builds a record of rows rows of spec; row p is sample
// 10+p with label p, element j of its image is elem(p, j).
func buildTensorRecord(t *testing.T, mem memory.Allocator, spec arrowio.RowSpec, rows int, elem func(p, j int) float32) arrow.RecordBatch {
	t.Helper()
	schema, err := arrowio.NewSchema(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := arrowio.NewBatchBuilder(mem, schema, rows)
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Release()
	for p := range rows {
		img, err := bb.Next(uint64(10+p), int64(p))
		if err != nil {
			t.Fatal(err)
		}
		for j := range len(img) / spec.ElemBytes() {
			if spec.Float32 {
				*(*float32)(unsafe.Pointer(&img[4*j])) = elem(p, j)
			} else {
				img[j] = byte(elem(p, j))
			}
		}
	}
	return bb.NewRecord()
}

func TestTensorsOf(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	elem := func(p, j int) float32 { return float32((p*7 + j) % 251) }
	tests := []struct {
		name  string
		spec  arrowio.RowSpec
		shape tensor.Shape
		dtype tensor.Dtype
	}{
		{name: "uint8 HWC", spec: arrowio.ImageSpec(4, 5, false), shape: tensor.Shape{3, 4, 5, 3}, dtype: tensor.Uint8},
		{name: "float32 CHW", spec: arrowio.ImageSpec(4, 5, true), shape: tensor.Shape{3, 3, 4, 5}, dtype: tensor.Float32},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := buildTensorRecord(t, mem, tc.spec, 3, elem)
			defer rec.Release()
			for _, bare := range []bool{false, true} {
				r := rec
				if bare { // the image column as its storage, the type in field metadata
					r = bareStorage(t, rec)
					defer r.Release()
				}
				ts, err := TensorsOf(r)
				if err != nil {
					t.Fatalf("bare=%v: %v", bare, err)
				}
				if !ts.Images.Shape().Eq(tc.shape) || ts.Images.Dtype() != tc.dtype {
					t.Fatalf("bare=%v: images %v %v, want %v %v", bare, ts.Images.Shape(), ts.Images.Dtype(), tc.shape, tc.dtype)
				}
				if len(ts.Index) != 3 || ts.Index[2] != 12 || ts.Label[1] != 1 {
					t.Fatalf("bare=%v: index %v label %v", bare, ts.Index, ts.Label)
				}
				// Element (1, j) of the flat row is at the same place in the view.
				at := []int{1, 1, 2, 2} // row 1, then its own coordinates
				j := tc.shape[3]*(tc.shape[2]*at[1]+at[2]) + at[3]
				got, err := ts.Images.At(at...)
				if err != nil {
					t.Fatal(err)
				}
				want := elem(1, j)
				if g, ok := got.(float32); ok && g != want || !ok && float32(got.(uint8)) != want {
					t.Fatalf("bare=%v: Images.At(%v) = %v, want %v", bare, at, got, want)
				}
				// A view, not a copy: the tensor's data is the record's buffer.
				vals, _ := arrowio.ImagesOf(r)
				if p := tensorDataPtr(ts.Images); p != unsafe.Pointer(&vals[0]) {
					t.Fatalf("bare=%v: the tensor copies the image buffer", bare)
				}
			}
		})
	}
}

// tensorDataPtr returns the address of the first element of d's data.
func tensorDataPtr(d *tensor.Dense) unsafe.Pointer {
	switch v := d.Data().(type) {
	case []uint8:
		return unsafe.Pointer(&v[0])
	case []float32:
		return unsafe.Pointer(&v[0])
	}
	return nil
}

// bareStorage returns rec with its image column replaced by the
// extension's storage and the field's extension metadata, as an IPC reader
// without the extension type registered produces it.
func bareStorage(t *testing.T, rec arrow.RecordBatch) arrow.RecordBatch {
	t.Helper()
	f := rec.Schema().Field(2)
	typ := f.Type.(*arrowio.FixedShapeTensorType)
	md := arrow.NewMetadata([]string{"ARROW:extension:name", "ARROW:extension:metadata"}, []string{typ.ExtensionName(), typ.Serialize()})
	fields := append(rec.Schema().Fields()[:2:2], arrow.Field{Name: f.Name, Type: typ.StorageType(), Metadata: md})
	cols := append(rec.Columns()[:2:2], rec.Column(2).(array.ExtensionArray).Storage())
	return array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
}

func TestTensorsOfInvalid(t *testing.T) {
	mem := memory.NewGoAllocator()
	good := buildTensorRecord(t, mem, arrowio.ImageSpec(2, 2, false), 2, func(p, j int) float32 { return 1 })
	defer good.Release()
	empty := good.NewSlice(0, 0)
	defer empty.Release()
	noImage := array.NewRecordBatch(arrow.NewSchema(good.Schema().Fields()[:2], nil), good.Columns()[:2], 2)
	defer noImage.Release()
	plain := array.NewRecordBatch(arrow.NewSchema(append(good.Schema().Fields()[:2:2],
		arrow.Field{Name: "image", Type: good.Column(2).(array.ExtensionArray).Storage().DataType()}), nil),
		append(good.Columns()[:2:2], good.Column(2).(array.ExtensionArray).Storage()), 2)
	defer plain.Release()
	tests := []struct {
		name string
		rec  arrow.RecordBatch
	}{
		{name: "nil", rec: nil},
		{name: "empty", rec: empty},
		{name: "no image", rec: noImage},
		{name: "image without its tensor type", rec: plain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := TensorsOf(tc.rec); !errors.Is(err, arrowio.ErrSchema) {
				t.Fatalf("TensorsOf = %v, want ErrSchema", err)
			}
		})
	}
}

// TestFetchTensors streams a dataset as tensors: every batch's images are
// the served rows.
func TestFetchTensors(t *testing.T) {
	f := newFakeSource(t, 20, 3, 2)
	addr, _ := startServer(t, &Options{Source: f})
	cl, err := Dial(testCtx(t), "grpc://"+addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rows := 0
	_, err = cl.FetchTensors(testCtx(t), service.Request{Dataset: "train", BatchSize: 8, WorldSize: 1}, func(ts *Tensors) error {
		b := len(ts.Index)
		if !ts.Images.Shape().Eq(tensor.Shape{b, 3, 2, 3}) || ts.Images.Dtype() != tensor.Uint8 {
			t.Fatalf("batch of %d: images %v %v", b, ts.Images.Shape(), ts.Images.Dtype())
		}
		data := ts.Images.Data().([]uint8)
		for r, i := range ts.Index {
			for j := range f.rowBytes() {
				if data[r*f.rowBytes()+j] != pixel(i, j) {
					t.Fatalf("sample %d byte %d = %d, want %d", i, j, data[r*f.rowBytes()+j], pixel(i, j))
				}
			}
		}
		rows += b
		return nil
	})
	if err != nil || rows != 20 {
		t.Fatalf("FetchTensors: %d rows, %v; want 20", rows, err)
	}
}
