package arrowio

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
)

// Column names of the record schema (SPEC §4).
const (
	ColIndex = "index"
	ColLabel = "label"
	ColImage = "image"
)

// ErrSchema reports a schema that is not a loaderd record schema.
var ErrSchema = errors.New("arrowio: not a loaderd schema")

// RowSpec describes the image tensor of a row: its shape, dimension names and
// element type (uint8, or float32 after normalize).
type RowSpec struct {
	Shape    []int
	DimNames []string
	Float32  bool
}

// ImageSpec returns the canonical spec of an H×W RGB image: uint8 [H,W,3]
// with dim_names [H,W,C], or float32 [3,H,W] with [C,H,W].
func ImageSpec(h, w int, float bool) RowSpec {
	if float {
		return RowSpec{Shape: []int{3, h, w}, DimNames: []string{"C", "H", "W"}, Float32: true}
	}
	return RowSpec{Shape: []int{h, w, 3}, DimNames: []string{"H", "W", "C"}}
}

// ElemBytes returns the size of one tensor element: 1, or 4 for float32.
func (s RowSpec) ElemBytes() int {
	if s.Float32 {
		return 4
	}
	return 1
}

// RowBytes returns the size of one image tensor in bytes, or 0 if the shape
// is invalid.
func (s RowSpec) RowBytes() int {
	n, err := shapeSize(s.Shape)
	if err != nil {
		return 0
	}
	return n * s.ElemBytes()
}

func (s RowSpec) valueType() arrow.DataType {
	if s.Float32 {
		return arrow.PrimitiveTypes.Float32
	}
	return arrow.PrimitiveTypes.Uint8
}

// NewSchema returns the record schema of spec: non-nullable columns index
// uint64, label int64 and image fixed_shape_tensor, with meta as the schema
// metadata (loaderd.dataset etc.; nil for none). It registers the extension
// types.
func NewSchema(spec RowSpec, meta map[string]string) (*arrow.Schema, error) {
	RegisterExtensionTypes()
	typ, err := NewFixedShapeTensorType(spec.valueType(), spec.Shape, spec.DimNames)
	if err != nil {
		return nil, err
	}
	fields := []arrow.Field{
		{Name: ColIndex, Type: arrow.PrimitiveTypes.Uint64},
		{Name: ColLabel, Type: arrow.PrimitiveTypes.Int64},
		{Name: ColImage, Type: typ},
	}
	var md *arrow.Metadata
	if len(meta) > 0 {
		keys := slices.Sorted(maps.Keys(meta))
		vals := make([]string, len(keys))
		for i, k := range keys {
			vals[i] = meta[k]
		}
		m := arrow.NewMetadata(keys, vals)
		md = &m
	}
	return arrow.NewSchema(fields, md), nil
}

// SpecOf checks that schema is a loaderd record schema and returns its
// image spec.
func SpecOf(schema *arrow.Schema) (RowSpec, error) {
	if schema == nil {
		return RowSpec{}, fmt.Errorf("%w: nil schema", ErrSchema)
	}
	want := []struct {
		name string
		id   arrow.Type
	}{
		{name: ColIndex, id: arrow.UINT64},
		{name: ColLabel, id: arrow.INT64},
		{name: ColImage, id: arrow.EXTENSION},
	}
	if schema.NumFields() != len(want) {
		return RowSpec{}, fmt.Errorf("%w: %d fields, want %d", ErrSchema, schema.NumFields(), len(want))
	}
	for i, w := range want {
		f := schema.Field(i)
		if f.Name != w.name || f.Type.ID() != w.id || f.Nullable {
			return RowSpec{}, fmt.Errorf("%w: field %d is %s, want non-nullable %q", ErrSchema, i, f, w.name)
		}
	}
	typ, ok := schema.Field(2).Type.(*FixedShapeTensorType)
	if !ok {
		return RowSpec{}, fmt.Errorf("%w: image is %s, want %s", ErrSchema, schema.Field(2).Type, TensorExtensionName)
	}
	spec := RowSpec{Shape: typ.Shape(), DimNames: typ.DimNames()}
	switch typ.ValueType().ID() {
	case arrow.UINT8:
	case arrow.FLOAT32:
		spec.Float32 = true
	default:
		return RowSpec{}, fmt.Errorf("%w: image elements are %s, want uint8 or float32", ErrSchema, typ.ValueType())
	}
	return spec, nil
}
