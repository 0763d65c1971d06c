package arrowio

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// TensorExtensionName is the name of Arrow's canonical fixed-shape tensor
// extension type.
const TensorExtensionName = "arrow.fixed_shape_tensor"

// ErrTensorType reports an invalid fixed_shape_tensor type or metadata.
var ErrTensorType = errors.New("arrowio: invalid fixed_shape_tensor type")

// FixedShapeTensorType is Arrow's canonical extension type
// "arrow.fixed_shape_tensor": each value is a tensor of a fixed shape, stored
// row-major as a FixedSizeList<value>[prod(shape)]. Permutations are not
// supported (the identity is implied).
type FixedShapeTensorType struct {
	arrow.ExtensionBase
	shape    []int
	dimNames []string
	meta     string // the serialized metadata, computed once
}

// tensorMeta is the JSON of the extension metadata, as the Arrow spec gives it.
type tensorMeta struct {
	Shape       []int    `json:"shape"`
	DimNames    []string `json:"dim_names,omitempty"`
	Permutation []int    `json:"permutation,omitempty"`
}

// NewFixedShapeTensorType returns the tensor type of the given value type and
// shape. dimNames is nil or names each dimension.
func NewFixedShapeTensorType(value arrow.DataType, shape []int, dimNames []string) (*FixedShapeTensorType, error) {
	if value == nil {
		return nil, fmt.Errorf("%w: nil value type", ErrTensorType)
	}
	if _, ok := value.(arrow.FixedWidthDataType); !ok || value.ID() == arrow.BOOL {
		return nil, fmt.Errorf("%w: value type %s is not fixed-width", ErrTensorType, value)
	}
	n, err := shapeSize(shape)
	if err != nil {
		return nil, err
	}
	if dimNames != nil && len(dimNames) != len(shape) {
		return nil, fmt.Errorf("%w: %d dim_names for %d dimensions", ErrTensorType, len(dimNames), len(shape))
	}
	t := &FixedShapeTensorType{
		ExtensionBase: arrow.ExtensionBase{Storage: arrow.FixedSizeListOf(int32(n), value)},
		shape:         append([]int(nil), shape...),
	}
	if len(dimNames) > 0 {
		t.dimNames = append([]string(nil), dimNames...)
	}
	meta, err := json.Marshal(tensorMeta{Shape: t.shape, DimNames: t.dimNames})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTensorType, err)
	}
	t.meta = string(meta)
	return t, nil
}

// shapeSize returns the number of elements of a tensor of the given shape.
func shapeSize(shape []int) (int, error) {
	if len(shape) == 0 {
		return 0, fmt.Errorf("%w: empty shape", ErrTensorType)
	}
	n := 1
	for _, d := range shape {
		if d <= 0 {
			return 0, fmt.Errorf("%w: dimension %d in shape %v", ErrTensorType, d, shape)
		}
		if n > math.MaxInt32/d {
			return 0, fmt.Errorf("%w: shape %v has more than 2^31-1 elements", ErrTensorType, shape)
		}
		n *= d
	}
	return n, nil
}

// Shape returns the tensor shape (a copy).
func (t *FixedShapeTensorType) Shape() []int { return append([]int(nil), t.shape...) }

// DimNames returns the dimension names (a copy), or nil.
func (t *FixedShapeTensorType) DimNames() []string {
	if t.dimNames == nil {
		return nil
	}
	return append([]string(nil), t.dimNames...)
}

// ValueType returns the type of the tensor elements.
func (t *FixedShapeTensorType) ValueType() arrow.DataType {
	return t.Storage.(*arrow.FixedSizeListType).Elem()
}

// ArrayType returns the type of FixedShapeTensorArray.
func (*FixedShapeTensorType) ArrayType() reflect.Type {
	return reflect.TypeOf(FixedShapeTensorArray{})
}

// ExtensionName returns TensorExtensionName.
func (*FixedShapeTensorType) ExtensionName() string { return TensorExtensionName }

func (t *FixedShapeTensorType) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "extension<%s[value_type=%s, shape=%v", TensorExtensionName, t.ValueType(), t.shape)
	if t.dimNames != nil {
		fmt.Fprintf(&b, ", dim_names=[%s]", strings.Join(t.dimNames, ","))
	}
	b.WriteString("]>")
	return b.String()
}

// Fingerprint includes the shape and dimension names, which the storage
// type alone does not determine.
func (t *FixedShapeTensorType) Fingerprint() string {
	return t.ExtensionBase.Fingerprint() + TensorExtensionName + t.meta
}

// Serialize returns the extension metadata, e.g.
// {"shape":[224,224,3],"dim_names":["H","W","C"]}.
func (t *FixedShapeTensorType) Serialize() string { return t.meta }

// Deserialize builds the type from its storage type and metadata.
func (*FixedShapeTensorType) Deserialize(storage arrow.DataType, data string) (arrow.ExtensionType, error) {
	var m tensorMeta
	dec := json.NewDecoder(strings.NewReader(data))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: metadata %q: %w", ErrTensorType, data, err)
	}
	for i, p := range m.Permutation {
		if p != i {
			return nil, fmt.Errorf("%w: permutation %v not supported", ErrTensorType, m.Permutation)
		}
	}
	fsl, ok := storage.(*arrow.FixedSizeListType)
	if !ok {
		return nil, fmt.Errorf("%w: storage %s is not a fixed-size list", ErrTensorType, storage)
	}
	t, err := NewFixedShapeTensorType(fsl.Elem(), m.Shape, m.DimNames)
	if err != nil {
		return nil, err
	}
	if fsl.Len() != t.Storage.(*arrow.FixedSizeListType).Len() {
		return nil, fmt.Errorf("%w: storage list size %d for shape %v", ErrTensorType, fsl.Len(), m.Shape)
	}
	t.Storage = storage // keep the storage as read (element field name, nullability)
	return t, nil
}

// ExtensionEquals reports whether other is a tensor type of the same value
// type, shape and dimension names.
func (t *FixedShapeTensorType) ExtensionEquals(other arrow.ExtensionType) bool {
	o, ok := other.(*FixedShapeTensorType)
	if !ok {
		return false
	}
	return arrow.TypeEqual(t.ValueType(), o.ValueType()) &&
		t.Storage.(*arrow.FixedSizeListType).Len() == o.Storage.(*arrow.FixedSizeListType).Len() &&
		t.meta == o.meta
}

// FixedShapeTensorArray is an array of FixedShapeTensorType.
type FixedShapeTensorArray struct {
	array.ExtensionArrayBase
}

// TensorBytes returns the element bytes of tensor i (zero copy).
func (a *FixedShapeTensorArray) TensorBytes(i int) []byte {
	vals, _ := tensorValues(a)
	n := len(vals) / max(a.Len(), 1)
	return vals[i*n : (i+1)*n]
}

var (
	_ arrow.ExtensionType  = (*FixedShapeTensorType)(nil)
	_ array.ExtensionArray = (*FixedShapeTensorArray)(nil)
)

var registerOnce sync.Once

// RegisterExtensionTypes registers FixedShapeTensorType with arrow-go, so
// that IPC readers produce it instead of the bare storage. It is safe to
// call any number of times; a type already registered under the name (by
// another package) is left in place.
func RegisterExtensionTypes() {
	registerOnce.Do(func() {
		proto, _ := NewFixedShapeTensorType(arrow.PrimitiveTypes.Uint8, []int{1}, nil)
		_ = arrow.RegisterExtensionType(proto) // an error means it is already registered
	})
}

// tensorValues returns the contiguous element bytes of a tensor array (its
// storage's child values between the first and the last row).
func tensorValues(a *FixedShapeTensorArray) ([]byte, error) {
	fsl, ok := a.Storage().(*array.FixedSizeList)
	if !ok {
		return nil, fmt.Errorf("%w: storage %s", ErrTensorType, a.Storage().DataType())
	}
	return fixedSizeListBytes(fsl)
}

// fixedSizeListBytes returns the values bytes of the rows of fsl, which must
// have no nulls and fixed-width elements.
func fixedSizeListBytes(fsl *array.FixedSizeList) ([]byte, error) {
	if fsl.NullN() != 0 {
		return nil, fmt.Errorf("%w: %d null tensors", ErrTensorType, fsl.NullN())
	}
	typ := fsl.DataType().(*arrow.FixedSizeListType)
	fw, ok := typ.Elem().(arrow.FixedWidthDataType)
	if !ok || fw.BitWidth()%8 != 0 {
		return nil, fmt.Errorf("%w: element type %s", ErrTensorType, typ.Elem())
	}
	child := fsl.ListValues().Data()
	if child.NullN() != 0 {
		return nil, fmt.Errorf("%w: null tensor elements", ErrTensorType)
	}
	width := fw.BitWidth() / 8
	per := int(typ.Len())
	start := (child.Offset() + fsl.Data().Offset()*per) * width
	end := start + fsl.Len()*per*width
	bufs := child.Buffers()
	if len(bufs) < 2 || (end > start && bufs[1] == nil) {
		return nil, fmt.Errorf("%w: missing values buffer", ErrTensorType)
	}
	if end == start {
		return []byte{}, nil
	}
	vals := bufs[1].Bytes()
	if end > len(vals) {
		return nil, fmt.Errorf("%w: values buffer holds %d bytes, want %d", ErrTensorType, len(vals), end)
	}
	return vals[start:end:end], nil
}
