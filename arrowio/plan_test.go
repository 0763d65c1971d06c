package arrowio

import (
	"slices"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

func TestPlanRoundTrip(t *testing.T) {
	data, err := NewSchema(ImageSpec(4, 5, false), map[string]string{"loaderd.dataset": "train", "loaderd.epoch": "3"})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanSchema(data)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"loaderd.dataset": "train", MetaTransport: "local", MetaRowBytes: "60"} {
		if got, _ := plan.Metadata().GetValue(k); got != want {
			t.Errorf("plan metadata %s = %q, want %q", k, got, want)
		}
	}
	back, rb, err := ImageSchemaOf(plan)
	if err != nil || rb != 60 || !back.Equal(data) || !back.Metadata().Equal(data.Metadata()) {
		t.Fatalf("ImageSchemaOf = %v, %d, %v; want %v, 60", back, rb, err, data)
	}
	if _, _, err := ImageSchemaOf(data); err == nil {
		t.Error("ImageSchemaOf of a record schema = nil error")
	}

	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	idx, lbl := []uint64{7, 3}, []int64{1, 0}
	files, rows, offs := []string{"local/lease-1/0-shard-000000.1.tmp", "local/lease-1/1-a.arrow"}, []int64{7, 3}, []int64{1000, 2000}
	rec, err := PlanRecord(mem, plan, idx, lbl, files, rows, offs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PlanOf(rec)
	rec.Release()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Index, idx) || !slices.Equal(p.Label, lbl) || !slices.Equal(p.File, files) || !slices.Equal(p.Row, rows) || !slices.Equal(p.Offset, offs) {
		t.Fatalf("PlanOf = %+v", p)
	}
	if _, err := PlanRecord(mem, plan, idx, lbl, files[:1], rows, offs); err == nil {
		t.Error("PlanRecord of uneven columns = nil error")
	}
}

func TestPlanOfRefusesEscapes(t *testing.T) {
	data, _ := NewSchema(ImageSpec(2, 2, false), nil)
	plan, _ := PlanSchema(data)
	for _, tc := range []struct {
		name   string
		file   string
		offset int64
	}{
		{name: "absolute", file: "/etc/passwd"},
		{name: "parent", file: "../x.arrow"},
		{name: "parent inside", file: "local/../../x"},
		{name: "dot", file: "./x"},
		{name: "empty", file: ""},
		{name: "backslash", file: `local\..\x`},
		{name: "negative offset", file: "local/x", offset: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := PlanRecord(nil, plan, []uint64{0}, []int64{0}, []string{tc.file}, []int64{0}, []int64{tc.offset})
			if err != nil {
				t.Fatal(err)
			}
			defer rec.Release()
			if p, err := PlanOf(rec); err == nil {
				t.Errorf("PlanOf(%q) = %+v, want an error", tc.file, p)
			}
		})
	}
}
