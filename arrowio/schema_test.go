package arrowio_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/loaderd/loaderd/arrowio"
)

func TestSchemaSpecRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		spec     arrowio.RowSpec
		rowBytes int
	}{
		{name: "imagenet uint8", spec: arrowio.ImageSpec(224, 224, false), rowBytes: 150528},
		{name: "imagenet float32", spec: arrowio.ImageSpec(224, 224, true), rowBytes: 602112},
		{name: "no dim names", spec: arrowio.RowSpec{Shape: []int{5, 7, 3}}, rowBytes: 105},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.spec.RowBytes(); got != tc.rowBytes {
				t.Errorf("RowBytes = %d, want %d", got, tc.rowBytes)
			}
			schema, err := arrowio.NewSchema(tc.spec, map[string]string{"loaderd.seed": "1", "loaderd.dataset": "d"})
			if err != nil {
				t.Fatal(err)
			}
			for i, name := range []string{"index", "label", "image"} {
				if f := schema.Field(i); f.Name != name || f.Nullable {
					t.Errorf("field %d = %s, want non-nullable %s", i, f, name)
				}
			}
			if v, ok := schema.Metadata().GetValue("loaderd.dataset"); !ok || v != "d" {
				t.Errorf("metadata = %v", schema.Metadata())
			}
			got, err := arrowio.SpecOf(schema)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.spec) {
				t.Errorf("SpecOf = %+v, want %+v", got, tc.spec)
			}
		})
	}
}

func TestSpecOfRejects(t *testing.T) {
	good, err := arrowio.NewSchema(arrowio.ImageSpec(2, 2, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	i16, err := arrowio.NewFixedShapeTensorType(arrow.PrimitiveTypes.Int16, []int{2, 2, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := good.Fields()
	with := func(i int, fld arrow.Field) *arrow.Schema {
		fs := append([]arrow.Field(nil), f...)
		fs[i] = fld
		return arrow.NewSchema(fs, nil)
	}
	tests := []struct {
		name   string
		schema *arrow.Schema
	}{
		{name: "nil"},
		{name: "two fields", schema: arrow.NewSchema(f[:2], nil)},
		{name: "renamed", schema: with(0, arrow.Field{Name: "idx", Type: f[0].Type})},
		{name: "nullable", schema: with(1, arrow.Field{Name: "label", Type: f[1].Type, Nullable: true})},
		{name: "signed index", schema: with(0, arrow.Field{Name: "index", Type: arrow.PrimitiveTypes.Int64})},
		{name: "bare storage", schema: with(2, arrow.Field{Name: "image", Type: f[2].Type.(arrow.ExtensionType).StorageType()})},
		{name: "int16 tensor", schema: with(2, arrow.Field{Name: "image", Type: i16})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := arrowio.SpecOf(tc.schema); !errors.Is(err, arrowio.ErrSchema) {
				t.Errorf("err = %v, want ErrSchema", err)
			}
		})
	}
	if _, err := arrowio.NewSchema(arrowio.RowSpec{Shape: []int{0, 3}}, nil); !errors.Is(err, arrowio.ErrTensorType) {
		t.Errorf("NewSchema(zero dim) = %v, want ErrTensorType", err)
	}
	if got := (arrowio.RowSpec{}).RowBytes(); got != 0 {
		t.Errorf("RowBytes of empty spec = %d, want 0", got)
	}
}
