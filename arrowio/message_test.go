package arrowio_test

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/loaderd/loaderd/arrowio"
)

// ourStream frames the schema message and the messages of batches as an IPC
// stream with its end-of-stream marker.
func ourStream(t *testing.T, schema *arrow.Schema, batches ...*testRows) []byte {
	t.Helper()
	var buf bytes.Buffer
	sm, err := arrowio.SchemaMessage(schema)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (arrowio.Message{Header: sm}).WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		m, err := batchMessage(schema, b)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, p := range m.Body {
			n += int64(len(p))
		}
		if n != m.BodyLen || n%8 != 0 {
			t.Fatalf("body pieces sum to %d, BodyLen %d; want equal, multiple of 8", n, m.BodyLen)
		}
		if _, err := m.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
	}
	buf.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	return buf.Bytes()
}

func TestBatchMessageIsIPC(t *testing.T) {
	tests := []struct {
		name string
		spec arrowio.RowSpec
		rows []int // batches of the stream
	}{
		{name: "uint8", spec: arrowio.ImageSpec(4, 5, false), rows: []int{3, 3, 1}},
		{name: "float32", spec: arrowio.ImageSpec(2, 3, true), rows: []int{5, 2}},
		{name: "odd row size", spec: arrowio.RowSpec{Shape: []int{1, 1, 3}}, rows: []int{7, 1}},
		{name: "256 rows", spec: arrowio.ImageSpec(8, 8, false), rows: []int{256}},
		{name: "empty batch", spec: arrowio.ImageSpec(2, 2, false), rows: []int{0, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			schema := testSchema(t, tc.spec)
			var batches []*testRows
			var want bytes.Buffer
			w := ipc.NewWriter(&want, ipc.WithSchema(schema), ipc.WithAllocator(mem))
			first := uint64(0)
			for _, n := range tc.rows {
				batches = append(batches, testBatch(tc.spec, n, first))
				rec := buildRecord(t, mem, schema, n, first)
				if err := w.Write(rec); err != nil {
					t.Fatal(err)
				}
				rec.Release()
				first += uint64(n)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got := ourStream(t, schema, batches...)
			if !bytes.Equal(got, want.Bytes()) {
				t.Errorf("stream differs from ipc.Writer's: %d bytes, want %d", len(got), want.Len())
			}

			r, err := ipc.NewReader(bytes.NewReader(got), ipc.WithAllocator(mem))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Release()
			if !r.Schema().Equal(schema) {
				t.Errorf("schema = %s, want %s", r.Schema(), schema)
			}
			first = 0
			for _, n := range tc.rows {
				if !r.Next() {
					t.Fatalf("stream ended early: %v", r.Err())
				}
				checkRecord(t, r.RecordBatch(), n, first)
				first += uint64(n)
			}
			if r.Next() || r.Err() != nil {
				t.Errorf("extra record or error %v", r.Err())
			}
		})
	}
}

// flightData is a flight.DataStreamWriter and flight.DataStreamReader.
type flightData struct{ sent []*flight.FlightData }

// Send keeps a copy: flight's writer reuses its FlightData and buffers.
func (f *flightData) Send(d *flight.FlightData) error {
	f.sent = append(f.sent, &flight.FlightData{
		DataHeader: bytes.Clone(d.DataHeader),
		DataBody:   bytes.Clone(d.DataBody),
	})
	return nil
}

func (f *flightData) Recv() (*flight.FlightData, error) {
	if len(f.sent) == 0 {
		return nil, io.EOF
	}
	d := f.sent[0]
	f.sent = f.sent[1:]
	return d, nil
}

// TestBatchMessageIsFlightData checks that our messages are the FlightData
// that flight.NewRecordWriter sends and that flight.NewRecordReader reads.
func TestBatchMessageIsFlightData(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	spec := arrowio.ImageSpec(3, 5, false)
	schema := testSchema(t, spec)
	var theirs flightData
	w := flight.NewRecordWriter(&theirs, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	rec := buildRecord(t, mem, schema, 6, 10)
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	rec.Release()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if len(theirs.sent) != 2 {
		t.Fatalf("flight writer sent %d messages, want 2", len(theirs.sent))
	}
	sm, err := arrowio.SchemaMessage(schema)
	if err != nil {
		t.Fatal(err)
	}
	m, err := batchMessage(schema, testBatch(spec, 6, 10))
	if err != nil {
		t.Fatal(err)
	}
	ours := flightData{sent: []*flight.FlightData{
		{DataHeader: sm},
		{DataHeader: m.Header, DataBody: bytes.Join(m.Body, nil)},
	}}
	for i, d := range ours.sent {
		if !bytes.Equal(d.DataHeader, theirs.sent[i].DataHeader) || !bytes.Equal(d.DataBody, theirs.sent[i].DataBody) {
			t.Errorf("message %d differs from flight.NewRecordWriter's", i)
		}
	}
	r, err := flight.NewRecordReader(&ours, ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if !r.Next() {
		t.Fatalf("no record: %v", r.Err())
	}
	checkRecord(t, r.RecordBatch(), 6, 10)
}

func TestBatchMessageZeroCopy(t *testing.T) {
	spec := arrowio.ImageSpec(4, 4, false)
	schema := testSchema(t, spec)
	b := testBatch(spec, 5, 0)
	m, err := batchMessage(schema, b)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, p := range m.Body {
		for _, img := range b.Images {
			if len(p) > 0 && &p[0] == &img[0] {
				found++
			}
		}
	}
	if found != len(b.Images) {
		t.Errorf("%d of %d images passed in place", found, len(b.Images))
	}
	m2, err := batchMessage(schema, testBatch(spec, 5, 99))
	if err != nil {
		t.Fatal(err)
	}
	if &m.Header[0] != &m2.Header[0] {
		t.Error("header not cached per row count")
	}
}

func TestBatchMessageInvalid(t *testing.T) {
	spec := arrowio.ImageSpec(2, 2, false)
	schema := testSchema(t, spec)
	good := func() *testRows { return testBatch(spec, 3, 0) }
	bad := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Int8}}, nil)
	tests := []struct {
		name   string
		schema *arrow.Schema
		batch  *testRows
		want   error
	}{
		{name: "missing index", schema: schema, batch: func() *testRows { b := good(); b.Index = b.Index[:2]; return b }(), want: arrowio.ErrBatch},
		{name: "short image", schema: schema, batch: func() *testRows { b := good(); b.Images[1] = b.Images[1][1:]; return b }(), want: arrowio.ErrBatch},
		{name: "long image", schema: schema, batch: func() *testRows { b := good(); b.Images[2] = append(b.Images[2], 0); return b }(), want: arrowio.ErrBatch},
		{name: "missing label", schema: schema, batch: func() *testRows { b := good(); b.Label = b.Label[:2]; return b }(), want: arrowio.ErrBatch},
		{name: "missing image", schema: schema, batch: func() *testRows { b := good(); b.Images = b.Images[:2]; return b }(), want: arrowio.ErrBatch},
		{name: "nil image", schema: schema, batch: func() *testRows { b := good(); b.Images[0] = nil; return b }(), want: arrowio.ErrBatch},
		{name: "foreign schema", schema: bad, batch: good(), want: arrowio.ErrSchema},
		{name: "nil schema", batch: good(), want: arrowio.ErrSchema},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := batchMessage(tc.schema, tc.batch); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := arrowio.SchemaMessage(bad); !errors.Is(err, arrowio.ErrSchema) {
		t.Errorf("SchemaMessage(foreign) = %v, want ErrSchema", err)
	}
}

// TestBatchMessageConcurrent encodes batches of several sizes at once (run
// with -race).
func TestBatchMessageConcurrent(t *testing.T) {
	spec := arrowio.ImageSpec(2, 3, false)
	schema := testSchema(t, spec)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for g := range errs {
		wg.Go(func() {
			for rows := 1; rows <= 16; rows++ {
				m, err := batchMessage(schema, testBatch(spec, (rows+g)%16+1, 0))
				if err != nil {
					errs[g] = err
					return
				}
				var n int64
				for _, p := range m.Body {
					n += int64(len(p))
				}
				if n != m.BodyLen {
					errs[g] = errors.New("body length mismatch")
					return
				}
			}
		})
	}
	wg.Wait()
	for g, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", g, err)
		}
	}
}

// TestBatchMessageAcrossStreams: schemas that differ only in metadata (a
// new one per stream) share their record batch headers but not their
// schema messages.
func TestBatchMessageAcrossStreams(t *testing.T) {
	spec := arrowio.ImageSpec(3, 2, true)
	var headers [][]byte
	var schemaMsgs [][]byte
	for e := range 2 {
		schema, err := arrowio.NewSchema(spec, map[string]string{"loaderd.epoch": strconv.Itoa(e)})
		if err != nil {
			t.Fatal(err)
		}
		m, err := batchMessage(schema, testBatch(spec, 4, 0))
		if err != nil {
			t.Fatal(err)
		}
		sm, err := arrowio.SchemaMessage(schema)
		if err != nil {
			t.Fatal(err)
		}
		headers, schemaMsgs = append(headers, m.Header), append(schemaMsgs, sm)
	}
	if &headers[0][0] != &headers[1][0] {
		t.Error("the second stream's schema computed its batch header again")
	}
	if bytes.Equal(schemaMsgs[0], schemaMsgs[1]) {
		t.Error("schema messages of different metadata are equal")
	}
}

// TestMaxBatchRows checks the largest record batch under a limit against the
// exact message sizes on either side of it.
func TestMaxBatchRows(t *testing.T) {
	tests := []struct {
		name  string
		spec  arrowio.RowSpec
		limit int64
		most  int
		want  int // 0: only check the bracket
	}{
		{name: "uint8 224 under 2 GiB", spec: arrowio.ImageSpec(224, 224, false), limit: 1<<31 - 13, most: 65536},
		{name: "normalize float32 224 under 2 GiB", spec: arrowio.ImageSpec(224, 224, true), limit: 1<<31 - 13, most: 65536},
		{name: "odd rows, small limit", spec: arrowio.RowSpec{Shape: []int{3, 5, 3}}, limit: 10000, most: 65536},
		{name: "capped by most", spec: arrowio.ImageSpec(2, 2, false), limit: 1<<31 - 13, most: 100, want: 100},
		{name: "not one row", spec: arrowio.ImageSpec(64, 64, false), limit: 1000, most: 10, want: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			schema, err := arrowio.NewSchema(tc.spec, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := arrowio.MaxBatchRows(schema, tc.limit, tc.most)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.want > 0 && got != tc.want, tc.want < 0 && got != 0:
				t.Fatalf("MaxBatchRows = %d; want %d", got, max(tc.want, 0))
			case tc.want != 0:
				return
			}
			at, err := arrowio.BatchMessageSize(schema, got)
			if err != nil {
				t.Fatal(err)
			}
			past, err := arrowio.BatchMessageSize(schema, got+1)
			if err != nil {
				t.Fatal(err)
			}
			if at > tc.limit || past <= tc.limit {
				t.Fatalf("MaxBatchRows = %d: %d bytes, %d rows %d bytes; want the last count within %d", got, at, got+1, past, tc.limit)
			}
			// The size is what BatchMessage really sends.
			rows := testBatch(tc.spec, 3, 0)
			m, err := batchMessage(schema, rows)
			if err != nil {
				t.Fatal(err)
			}
			if three, _ := arrowio.BatchMessageSize(schema, 3); three != int64(len(m.Header))+m.BodyLen {
				t.Fatalf("BatchMessageSize(3) = %d; BatchMessage gives %d", three, int64(len(m.Header))+m.BodyLen)
			}
		})
	}
}
