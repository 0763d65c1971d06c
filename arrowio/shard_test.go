package arrowio_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/loaderd/loaderd/arrowio"
	"golang.org/x/sys/unix"
)

func testSchema(t testing.TB, spec arrowio.RowSpec) *arrow.Schema {
	t.Helper()
	schema, err := arrowio.NewSchema(spec, map[string]string{
		"loaderd.dataset": "train", "loaderd.seed": "42", "loaderd.epoch": "3",
	})
	if err != nil {
		t.Fatal(err)
	}
	return schema
}

// writeShard creates a shard file of rows rows (samples first..first+rows-1)
// the way the loader does: skeleton, MAP_SHARED mapping, rows written in
// reverse order into the mapping. It returns the file's path.
func writeShard(t *testing.T, schema *arrow.Schema, rows int, first uint64) string {
	t.Helper()
	l, err := arrowio.NewShardLayout(schema, rows)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "shard.arrow")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := l.WriteSkeleton(f); err != nil {
		t.Fatal(err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != l.Size {
		t.Fatalf("skeleton size = %v, %v; want %d", st.Size(), err, l.Size)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(l.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	for p := rows - 1; p >= 0; p-- {
		i := first + uint64(p)
		copy(l.Row(data, p), image(l.RowBytes, i))
		l.SetIndex(data, p, i)
		l.SetLabel(data, p, -int64(p))
	}
	if err := unix.Munmap(data); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestShardFileReadByArrow(t *testing.T) {
	tests := []struct {
		name string
		spec arrowio.RowSpec
		rows int
	}{
		{name: "uint8 HWC", spec: arrowio.ImageSpec(5, 7, false), rows: 9},
		{name: "float32 CHW", spec: arrowio.ImageSpec(2, 3, true), rows: 4},
		{name: "one row", spec: arrowio.ImageSpec(1, 1, false), rows: 1},
		{name: "odd row size", spec: arrowio.RowSpec{Shape: []int{3, 1, 1}}, rows: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			schema := testSchema(t, tc.spec)
			path := writeShard(t, schema, tc.rows, 100)

			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := ipc.NewFileReader(f, ipc.WithAllocator(mem))
			if err != nil {
				t.Fatal(err)
			}
			if !r.Schema().Equal(schema) || r.NumRecords() != 1 {
				t.Errorf("schema %s, %d records; want %s, 1", r.Schema(), r.NumRecords(), schema)
			}
			rec, err := r.RecordBatch(0)
			if err != nil {
				t.Fatal(err)
			}
			checkRecord(t, rec, tc.rows, 100)
			r.Close()

			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			mr, err := ipc.NewMappedFileReader(data)
			if err != nil {
				t.Fatal(err)
			}
			rec, err = mr.RecordBatch(0)
			if err != nil {
				t.Fatal(err)
			}
			checkRecord(t, rec, tc.rows, 100)
			mr.Close()

			v, err := arrowio.OpenShard(data, schema, tc.rows)
			if err != nil {
				t.Fatal(err)
			}
			if v.Rows() != tc.rows {
				t.Errorf("Rows = %d, want %d", v.Rows(), tc.rows)
			}
			for p := range tc.rows {
				i := uint64(100 + p)
				if v.Index(p) != i || v.Label(p) != -int64(p) || !bytes.Equal(v.Row(p), image(tc.spec.RowBytes(), i)) {
					t.Errorf("row %d: index %d label %d, want %d %d", p, v.Index(p), v.Label(p), i, -p)
				}
			}
			rec = v.Record()
			checkRecord(t, rec, tc.rows, 100)
			if err := validate(rec); err != nil {
				t.Error(err)
			}
			if imgs, err := arrowio.ImagesOf(rec); err != nil || &imgs[0] != &data[v.Layout().ImageOffset] {
				t.Errorf("Record's images are not the shard's bytes (%v)", err)
			}
			rec.Release()
			if got := v.Row(1 % tc.rows); &got[0] != &data[v.Layout().ImageOffset+int64(1%tc.rows*tc.spec.RowBytes())] {
				t.Error("Row copied the data")
			}
		})
	}
}

func TestShardSkeletonIsSparse(t *testing.T) {
	schema := testSchema(t, arrowio.ImageSpec(224, 224, false))
	l, err := arrowio.NewShardLayout(schema, 256) // 38.5 MB of pixels
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := l.WriteSkeleton(f); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != l.Size || st.Blocks*512 > 1<<20 {
		t.Errorf("size %d using %d bytes; want %d using at most 1 MiB", st.Size, st.Blocks*512, l.Size)
	}
	if l.ImageOffset%8 != 0 || l.IndexOffset%8 != 0 || l.LabelOffset%8 != 0 {
		t.Errorf("offsets %d %d %d not 8-aligned", l.IndexOffset, l.LabelOffset, l.ImageOffset)
	}
	if got, want := l.Size-l.ImageOffset, int64(256*150528); got < want {
		t.Errorf("image region %d bytes, want at least %d", got, want)
	}
}

func TestShardLayoutInvalid(t *testing.T) {
	schema := testSchema(t, arrowio.ImageSpec(2, 2, false))
	bad := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int8}}, nil)
	tests := []struct {
		name   string
		schema *arrow.Schema
		rows   int
		want   error
	}{
		{name: "zero rows", schema: schema, rows: 0, want: arrowio.ErrLayout},
		{name: "negative rows", schema: schema, rows: -1, want: arrowio.ErrLayout},
		{name: "absurd rows", schema: schema, rows: 1 << 40, want: arrowio.ErrLayout},
		{name: "not our schema", schema: bad, rows: 1, want: arrowio.ErrSchema},
		{name: "nil schema", rows: 1, want: arrowio.ErrSchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := arrowio.NewShardLayout(tc.schema, tc.rows); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpenShardRejects(t *testing.T) {
	spec := arrowio.ImageSpec(3, 3, false)
	schema := testSchema(t, spec)
	good, err := os.ReadFile(writeShard(t, schema, 6, 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := arrowio.OpenShard(good, schema, 6); err != nil {
		t.Fatalf("good shard: %v", err)
	}
	l, _ := arrowio.NewShardLayout(schema, 6)
	other, err := arrowio.NewSchema(spec, map[string]string{"loaderd.dataset": "val"})
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name   string
		data   []byte
		schema *arrow.Schema
		rows   int
	}{
		{name: "empty", data: nil, schema: schema, rows: 6},
		{name: "magic only", data: []byte("ARROW1\x00\x00"), schema: schema, rows: 6},
		{name: "truncated by one", data: good[:len(good)-1], schema: schema, rows: 6},
		{name: "truncated to half", data: good[:len(good)/2], schema: schema, rows: 6},
		{name: "one byte more", data: append(bytes.Clone(good), 0), schema: schema, rows: 6},
		{name: "other row count", data: good, schema: schema, rows: 5},
		{name: "other schema metadata", data: good, schema: other, rows: 6},
		{name: "bad leading magic", data: with(func(b []byte) []byte { b[0] = 'X'; return b }), schema: schema, rows: 6},
		{name: "bad trailing magic", data: with(func(b []byte) []byte { b[len(b)-1] = 'X'; return b }), schema: schema, rows: 6},
		{name: "bad footer length", data: with(func(b []byte) []byte { b[len(b)-10]++; return b }), schema: schema, rows: 6},
		{name: "zeroed header", data: with(func(b []byte) []byte { clear(b[:l.IndexOffset]); return b }), schema: schema, rows: 6},
		{name: "zeroed footer", data: with(func(b []byte) []byte { clear(b[len(b)-64:]); return b }), schema: schema, rows: 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := arrowio.OpenShard(tc.data, tc.schema, tc.rows)
			if !errors.Is(err, arrowio.ErrShard) {
				t.Errorf("OpenShard = %v, %v; want ErrShard", v, err)
			}
		})
	}

	// Every byte outside the value buffers is checked; the values are free.
	isValue := func(off int64) bool {
		in := func(start, n int64) bool { return off >= start && off < start+n }
		return in(l.IndexOffset, 8*6) || in(l.LabelOffset, 8*6) || in(l.ImageOffset, int64(6*l.RowBytes))
	}
	b := bytes.Clone(good)
	for off := range int64(len(b)) {
		b[off] ^= 0x5a
		_, err := arrowio.OpenShard(b, schema, 6)
		if isValue(off) && err != nil {
			t.Fatalf("flipping value byte %d: %v", off, err)
		}
		if !isValue(off) && !errors.Is(err, arrowio.ErrShard) {
			t.Fatalf("flipping structure byte %d: err = %v, want ErrShard", off, err)
		}
		b[off] ^= 0x5a
	}
}

func FuzzOpenShard(f *testing.F) {
	schema := testSchema(f, arrowio.ImageSpec(2, 2, false))
	l, err := arrowio.NewShardLayout(schema, 3)
	if err != nil {
		f.Fatal(err)
	}
	good := l.Skeleton()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("ARROW1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := arrowio.OpenShard(data, schema, 3)
		if err != nil {
			return
		}
		for p := range v.Rows() {
			_, _, _ = v.Index(p), v.Label(p), v.Row(p)
		}
	})
}
