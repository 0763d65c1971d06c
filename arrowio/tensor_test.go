package arrowio_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/loaderd/loaderd/arrowio"
)

func TestTensorTypeSerialize(t *testing.T) {
	tests := []struct {
		name     string
		value    arrow.DataType
		shape    []int
		dimNames []string
		want     string
		listSize int32
	}{
		{name: "HWC uint8", value: arrow.PrimitiveTypes.Uint8, shape: []int{224, 224, 3},
			dimNames: []string{"H", "W", "C"}, want: `{"shape":[224,224,3],"dim_names":["H","W","C"]}`, listSize: 150528},
		{name: "CHW float32", value: arrow.PrimitiveTypes.Float32, shape: []int{3, 2, 5},
			dimNames: []string{"C", "H", "W"}, want: `{"shape":[3,2,5],"dim_names":["C","H","W"]}`, listSize: 30},
		{name: "no dim names", value: arrow.PrimitiveTypes.Int16, shape: []int{4},
			want: `{"shape":[4]}`, listSize: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			typ, err := arrowio.NewFixedShapeTensorType(tc.value, tc.shape, tc.dimNames)
			if err != nil {
				t.Fatal(err)
			}
			if got := typ.Serialize(); got != tc.want {
				t.Errorf("Serialize = %s, want %s", got, tc.want)
			}
			if got := typ.ExtensionName(); got != "arrow.fixed_shape_tensor" {
				t.Errorf("ExtensionName = %q", got)
			}
			st, ok := typ.StorageType().(*arrow.FixedSizeListType)
			if !ok || st.Len() != tc.listSize || !arrow.TypeEqual(st.Elem(), tc.value) {
				t.Errorf("storage = %s, want fixed_size_list<%s>[%d]", typ.StorageType(), tc.value, tc.listSize)
			}
			back, err := typ.Deserialize(typ.StorageType(), typ.Serialize())
			if err != nil {
				t.Fatal(err)
			}
			if !typ.ExtensionEquals(back) || !arrow.TypeEqual(typ, back) {
				t.Errorf("Deserialize(Serialize) = %s, want %s", back, typ)
			}
			shape := typ.Shape()
			shape[0] = -1 // a copy
			if typ.Shape()[0] == -1 {
				t.Error("Shape returned the type's own slice")
			}
		})
	}
}

func TestTensorTypeInvalid(t *testing.T) {
	tests := []struct {
		name     string
		value    arrow.DataType
		shape    []int
		dimNames []string
	}{
		{name: "empty shape", value: arrow.PrimitiveTypes.Uint8},
		{name: "zero dimension", value: arrow.PrimitiveTypes.Uint8, shape: []int{2, 0}},
		{name: "negative dimension", value: arrow.PrimitiveTypes.Uint8, shape: []int{-2}},
		{name: "dim names mismatch", value: arrow.PrimitiveTypes.Uint8, shape: []int{2, 2}, dimNames: []string{"H"}},
		{name: "too many elements", value: arrow.PrimitiveTypes.Uint8, shape: []int{1 << 16, 1 << 16}},
		{name: "variable width value", value: arrow.BinaryTypes.String, shape: []int{2}},
		{name: "bool value", value: arrow.FixedWidthTypes.Boolean, shape: []int{2}},
		{name: "nil value", shape: []int{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := arrowio.NewFixedShapeTensorType(tc.value, tc.shape, tc.dimNames)
			if !errors.Is(err, arrowio.ErrTensorType) {
				t.Errorf("err = %v, want ErrTensorType", err)
			}
		})
	}
}

func TestTensorTypeDeserialize(t *testing.T) {
	proto, err := arrowio.NewFixedShapeTensorType(arrow.PrimitiveTypes.Uint8, []int{1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	u8x6 := arrow.FixedSizeListOf(6, arrow.PrimitiveTypes.Uint8)
	tests := []struct {
		name    string
		storage arrow.DataType
		meta    string
		wantErr bool
	}{
		{name: "plain", storage: u8x6, meta: `{"shape":[2,3]}`},
		{name: "identity permutation", storage: u8x6, meta: `{"shape":[2,3],"permutation":[0,1]}`},
		{name: "whitespace", storage: u8x6, meta: ` { "shape" : [2, 3], "dim_names": ["a","b"] } `},
		{name: "other permutation", storage: u8x6, meta: `{"shape":[2,3],"permutation":[1,0]}`, wantErr: true},
		{name: "size mismatch", storage: u8x6, meta: `{"shape":[2,4]}`, wantErr: true},
		{name: "not a list", storage: arrow.PrimitiveTypes.Uint8, meta: `{"shape":[2,3]}`, wantErr: true},
		{name: "garbled", storage: u8x6, meta: `{"shape":[2,3`, wantErr: true},
		{name: "empty", storage: u8x6, meta: ``, wantErr: true},
		{name: "wrong types", storage: u8x6, meta: `{"shape":"2x3"}`, wantErr: true},
		{name: "no shape", storage: u8x6, meta: `{}`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := proto.Deserialize(tc.storage, tc.meta)
			if tc.wantErr {
				if !errors.Is(err, arrowio.ErrTensorType) {
					t.Errorf("Deserialize = %v, %v; want ErrTensorType", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := got.(*arrowio.FixedShapeTensorType).Shape(); len(s) != 2 || s[0] != 2 || s[1] != 3 {
				t.Errorf("shape = %v, want [2 3]", s)
			}
		})
	}
}

func TestTensorTypeEquals(t *testing.T) {
	mk := func(value arrow.DataType, shape []int, names []string) *arrowio.FixedShapeTensorType {
		t.Helper()
		typ, err := arrowio.NewFixedShapeTensorType(value, shape, names)
		if err != nil {
			t.Fatal(err)
		}
		return typ
	}
	u8 := arrow.PrimitiveTypes.Uint8
	base := mk(u8, []int{4, 6, 3}, []string{"H", "W", "C"})
	tests := []struct {
		name  string
		other *arrowio.FixedShapeTensorType
		want  bool
	}{
		{name: "same", other: mk(u8, []int{4, 6, 3}, []string{"H", "W", "C"}), want: true},
		{name: "transposed shape", other: mk(u8, []int{6, 4, 3}, []string{"H", "W", "C"})},
		{name: "other names", other: mk(u8, []int{4, 6, 3}, []string{"C", "H", "W"})},
		{name: "no names", other: mk(u8, []int{4, 6, 3}, nil)},
		{name: "other value", other: mk(arrow.PrimitiveTypes.Int8, []int{4, 6, 3}, []string{"H", "W", "C"})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := base.ExtensionEquals(tc.other); got != tc.want {
				t.Errorf("ExtensionEquals = %v, want %v", got, tc.want)
			}
			if got := arrow.TypeEqual(base, tc.other); got != tc.want {
				t.Errorf("TypeEqual = %v, want %v", got, tc.want)
			}
			if got := base.Fingerprint() == tc.other.Fingerprint(); got != tc.want {
				t.Errorf("equal fingerprints = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTensorIPCRoundTrip writes a record through arrow-go's IPC file writer
// and reads it back: the image column must come back as the tensor type.
func TestTensorIPCRoundTrip(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	arrowio.RegisterExtensionTypes()
	arrowio.RegisterExtensionTypes() // twice is fine
	for _, float := range []bool{false, true} {
		schema, err := arrowio.NewSchema(arrowio.ImageSpec(3, 4, float), map[string]string{"loaderd.dataset": "train"})
		if err != nil {
			t.Fatal(err)
		}
		rec := buildRecord(t, mem, schema, 5, 1)
		var buf bytes.Buffer
		w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(schema), ipc.WithAllocator(mem))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := ipc.NewFileReader(bytes.NewReader(buf.Bytes()), ipc.WithAllocator(mem))
		if err != nil {
			t.Fatal(err)
		}
		if !r.Schema().Equal(schema) {
			t.Errorf("schema read = %s, want %s", r.Schema(), schema)
		}
		typ, ok := r.Schema().Field(2).Type.(*arrowio.FixedShapeTensorType)
		if !ok || !arrow.TypeEqual(typ, schema.Field(2).Type) {
			t.Errorf("image type read = %s, want %s", r.Schema().Field(2).Type, schema.Field(2).Type)
		}
		got, err := r.RecordBatch(0)
		if err != nil {
			t.Fatal(err)
		}
		checkRecord(t, got, 5, 1)
		if _, ok := got.Column(2).(*arrowio.FixedShapeTensorArray); !ok {
			t.Errorf("image column is %T, want *FixedShapeTensorArray", got.Column(2))
		}
		r.Close()
		rec.Release()
	}
}
