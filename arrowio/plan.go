package arrowio

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// A local stream's plans (SPEC §9; the wire format is in docs/SPEC.md):
// one record batch per training batch, a row per sample, naming where the
// sample's image lies instead of carrying it.
const (
	ColFile   = "file"   // utf8: the file, relative to the cache directory, slash-separated
	ColRow    = "row"    // int64: the row of the file's record batch
	ColOffset = "offset" // int64: the byte offset of the row's image values in the file

	MetaTransport   = "loaderd.transport"    // "local"
	MetaImageSchema = "loaderd.image_schema" // base64 of the IPC stream of the record schema (SPEC §4)
	MetaRowBytes    = "loaderd.row_bytes"    // bytes of one image tensor, decimal
)

// ErrPlan reports a plan schema or plan record that is not one PlanSchema
// and PlanRecord make.
var ErrPlan = errors.New("arrowio: not a loaderd plan")

// PlanSchema returns the schema of the plans of a local stream whose
// ordinary stream has schema data: columns index uint64, label int64,
// file utf8, row int64 and offset int64, none nullable; the metadata of
// data plus MetaTransport, MetaImageSchema and MetaRowBytes.
func PlanSchema(data *arrow.Schema) (*arrow.Schema, error) {
	spec, err := SpecOf(data)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(data))
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("arrowio: plan schema: %w", err)
	}
	md := data.Metadata()
	m := make(map[string]string, md.Len()+3)
	for i, k := range md.Keys() {
		m[k] = md.Values()[i]
	}
	m[MetaTransport] = "local"
	m[MetaImageSchema] = base64.StdEncoding.EncodeToString(buf.Bytes())
	m[MetaRowBytes] = strconv.Itoa(spec.RowBytes())
	keys := slices.Sorted(maps.Keys(m))
	vals := make([]string, len(keys))
	for i, k := range keys {
		vals[i] = m[k]
	}
	meta := arrow.NewMetadata(keys, vals)
	return arrow.NewSchema(planFields, &meta), nil
}

var planFields = []arrow.Field{
	{Name: ColIndex, Type: arrow.PrimitiveTypes.Uint64},
	{Name: ColLabel, Type: arrow.PrimitiveTypes.Int64},
	{Name: ColFile, Type: arrow.BinaryTypes.String},
	{Name: ColRow, Type: arrow.PrimitiveTypes.Int64},
	{Name: ColOffset, Type: arrow.PrimitiveTypes.Int64},
}

// ImageSchemaOf returns the record schema a plan schema carries, and the
// bytes of one image tensor.
func ImageSchemaOf(plan *arrow.Schema) (*arrow.Schema, int, error) {
	RegisterExtensionTypes()
	if err := checkPlanFields(plan); err != nil {
		return nil, 0, err
	}
	md := plan.Metadata()
	enc, ok := md.GetValue(MetaImageSchema)
	if !ok {
		return nil, 0, fmt.Errorf("%w: no %s", ErrPlan, MetaImageSchema)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %w", ErrPlan, MetaImageSchema, err)
	}
	r, err := ipc.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %w", ErrPlan, MetaImageSchema, err)
	}
	data := r.Schema()
	r.Release()
	spec, err := SpecOf(data)
	if err != nil {
		return nil, 0, err
	}
	if rb, _ := md.GetValue(MetaRowBytes); rb != strconv.Itoa(spec.RowBytes()) {
		return nil, 0, fmt.Errorf("%w: %s %q, the image schema has %d", ErrPlan, MetaRowBytes, rb, spec.RowBytes())
	}
	return data, spec.RowBytes(), nil
}

func checkPlanFields(s *arrow.Schema) error {
	if s == nil || s.NumFields() != len(planFields) {
		return fmt.Errorf("%w: schema %v", ErrPlan, s)
	}
	for i, f := range planFields {
		if g := s.Field(i); g.Name != f.Name || !arrow.TypeEqual(g.Type, f.Type) {
			return fmt.Errorf("%w: column %d is %s %s, want %s %s", ErrPlan, i, g.Name, g.Type, f.Name, f.Type)
		}
	}
	return nil
}

// PlanRecord returns the plan record of a batch: for row i, index[i],
// label[i], file[i], row[i] and offset[i]. The columns must have the same
// length. The caller releases the record.
func PlanRecord(mem memory.Allocator, plan *arrow.Schema, index []uint64, label []int64, file []string, row, offset []int64) (arrow.RecordBatch, error) {
	n := len(index)
	if len(label) != n || len(file) != n || len(row) != n || len(offset) != n {
		return nil, fmt.Errorf("%w: columns of %d, %d, %d, %d and %d rows", ErrPlan, n, len(label), len(file), len(row), len(offset))
	}
	if err := checkPlanFields(plan); err != nil {
		return nil, err
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	b := array.NewRecordBuilder(mem, plan)
	defer b.Release()
	b.Field(0).(*array.Uint64Builder).AppendValues(index, nil)
	b.Field(1).(*array.Int64Builder).AppendValues(label, nil)
	b.Field(2).(*array.StringBuilder).AppendValues(file, nil)
	b.Field(3).(*array.Int64Builder).AppendValues(row, nil)
	b.Field(4).(*array.Int64Builder).AppendValues(offset, nil)
	return b.NewRecordBatch(), nil
}

// A Plan is the columns of a plan record, read by PlanOf.
type Plan struct {
	Index  []uint64
	Label  []int64
	File   []string
	Row    []int64
	Offset []int64
}

// PlanOf reads a plan record. Every file must be a relative,
// slash-separated path that stays within the directory it is relative to
// (no "..", not absolute), every row and offset non-negative; nulls are
// refused. The slices are copies.
func PlanOf(rec arrow.RecordBatch) (*Plan, error) {
	if rec == nil {
		return nil, fmt.Errorf("%w: nil record", ErrPlan)
	}
	if err := checkPlanFields(rec.Schema()); err != nil {
		return nil, err
	}
	for i := range int(rec.NumCols()) {
		if rec.Column(i).NullN() != 0 {
			return nil, fmt.Errorf("%w: nulls in %s", ErrPlan, planFields[i].Name)
		}
	}
	n := int(rec.NumRows())
	p := &Plan{
		Index:  slices.Clone(rec.Column(0).(*array.Uint64).Uint64Values()),
		Label:  slices.Clone(rec.Column(1).(*array.Int64).Int64Values()),
		File:   make([]string, n),
		Row:    slices.Clone(rec.Column(3).(*array.Int64).Int64Values()),
		Offset: slices.Clone(rec.Column(4).(*array.Int64).Int64Values()),
	}
	files := rec.Column(2).(*array.String)
	for i := range n {
		f := files.Value(i)
		if f == "" || strings.HasPrefix(f, "/") || strings.Contains(f, "\\") || path.Clean(f) != f || f == ".." || strings.HasPrefix(f, "../") {
			return nil, fmt.Errorf("%w: row %d names %q, not a path within the cache", ErrPlan, i, f)
		}
		if p.Row[i] < 0 || p.Offset[i] < 0 {
			return nil, fmt.Errorf("%w: row %d: row %d, offset %d", ErrPlan, i, p.Row[i], p.Offset[i])
		}
		p.File[i] = strings.Clone(f)
	}
	return p, nil
}
