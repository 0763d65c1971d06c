package flightsvc

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/endian"
	"gorgonia.org/tensor"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
)

// Tensors is one record batch of a loaderd stream as tensors, for Go
// trainers (the Python client gives numpy arrays). Every field is a view
// over the record's Arrow buffers, not a copy: it is valid as long as the
// record is (during FetchTensors' callback, or until the Release of a
// record the caller retained), and must not be written.
type Tensors struct {
	// Images holds row i's image at index i of the first axis: shape
	// (B, H, W, C) of uint8, or (B, C, H, W) of float32 when the pipeline
	// ends in normalize: the record's image tensor with the batch axis in
	// front (SPEC §4).
	Images *tensor.Dense
	Index  []uint64 // the sample each row holds (SPEC §1), length B
	Label  []int64  // its class label, length B
}

// TensorsOf returns the columns of rec, a record of a loaderd stream, as
// Tensors aliasing rec's buffers. The image column may be the
// fixed_shape_tensor extension array or its storage (a FixedSizeList whose
// field carries the extension's name and metadata, as when the extension
// type is not registered). Errors wrap arrowio.ErrSchema (not a loaderd
// record, or an empty one: a stream sends no empty batch) or
// arrowio.ErrTensorType.
func TensorsOf(rec arrow.RecordBatch) (*Tensors, error) {
	if rec == nil {
		return nil, fmt.Errorf("%w: nil record", arrowio.ErrSchema)
	}
	rows := int(rec.NumRows())
	if rows == 0 {
		return nil, fmt.Errorf("%w: empty record", arrowio.ErrSchema)
	}
	index, ok1 := column(rec, arrowio.ColIndex).(*array.Uint64)
	label, ok2 := column(rec, arrowio.ColLabel).(*array.Int64)
	if !ok1 || !ok2 || index.NullN() != 0 || label.NullN() != 0 {
		return nil, fmt.Errorf("%w: want non-null index uint64 and label int64 columns", arrowio.ErrSchema)
	}
	typ, err := imageType(rec)
	if err != nil {
		return nil, err
	}
	vals, err := arrowio.ImagesOf(rec)
	if err != nil {
		return nil, err
	}
	shape := append([]int{rows}, typ.Shape()...)
	var backing any
	switch typ.ValueType().ID() {
	case arrow.UINT8:
		backing = vals
	case arrow.FLOAT32:
		if endian.IsBigEndian || uintptr(unsafe.Pointer(unsafe.SliceData(vals)))%unsafe.Alignof(float32(0)) != 0 {
			// Arrow's buffers are little-endian and 8-byte aligned by
			// every arrow-go reader; anything else is not a view.
			return nil, fmt.Errorf("%w: float32 values not addressable in place", arrowio.ErrTensorType)
		}
		backing = unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(vals))), len(vals)/4)
	default:
		return nil, fmt.Errorf("%w: image elements are %s, want uint8 or float32", arrowio.ErrSchema, typ.ValueType())
	}
	return &Tensors{
		Images: tensor.New(tensor.WithShape(shape...), tensor.WithBacking(backing)),
		Index:  index.Uint64Values(),
		Label:  label.Int64Values(),
	}, nil
}

// column returns the only column of rec named name, or nil.
func column(rec arrow.RecordBatch, name string) arrow.Array {
	idx := rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		return nil
	}
	return rec.Column(idx[0])
}

// imageType returns the fixed_shape_tensor type of rec's image column,
// from the extension array or, for its bare storage, from the field's
// extension metadata.
func imageType(rec arrow.RecordBatch) (*arrowio.FixedShapeTensorType, error) {
	idx := rec.Schema().FieldIndices(arrowio.ColImage)
	if len(idx) != 1 {
		return nil, fmt.Errorf("%w: %d %q columns", arrowio.ErrSchema, len(idx), arrowio.ColImage)
	}
	f := rec.Schema().Field(idx[0])
	if typ, ok := f.Type.(*arrowio.FixedShapeTensorType); ok {
		return typ, nil
	}
	name, _ := f.Metadata.GetValue("ARROW:extension:name")
	meta, _ := f.Metadata.GetValue("ARROW:extension:metadata")
	if name != arrowio.TensorExtensionName {
		return nil, fmt.Errorf("%w: image is %s, want %s", arrowio.ErrSchema, f.Type, arrowio.TensorExtensionName)
	}
	typ, err := (*arrowio.FixedShapeTensorType)(nil).Deserialize(f.Type, meta)
	if err != nil {
		return nil, err
	}
	return typ.(*arrowio.FixedShapeTensorType), nil
}

// FetchTensors is Fetch with each record batch handed to fn as Tensors,
// valid only during the call.
func (c *Client) FetchTensors(ctx context.Context, req service.Request, fn func(*Tensors) error) (FetchStats, error) {
	return c.Fetch(ctx, req, func(rec arrow.RecordBatch) error {
		t, err := TensorsOf(rec)
		if err != nil {
			return err
		}
		return fn(t)
	})
}
