package flightsvc

import (
	"bytes"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/loaderd/loaderd/arrowio"
)

func TestCodecMarshal(t *testing.T) {
	c, err := newFlightCodec()
	if err != nil {
		t.Fatal(err)
	}
	big := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	tests := []struct {
		name     string
		header   []byte
		body     [][]byte
		wantLent int // pieces handed to gRPC without a copy
	}{
		{name: "small pieces only", header: []byte("hdr"), body: [][]byte{[]byte("ab"), []byte("cdef")}, wantLent: 0},
		{name: "large rows", header: big(300, 'h'), body: [][]byte{big(16, 1), big(5000, 2), big(8, 0), big(5000, 3), big(2000, 4)}, wantLent: 3},
		{name: "empty body", header: []byte("schema"), wantLent: 0},
		{name: "empty piece", header: []byte("h"), body: [][]byte{nil, big(2048, 9), {}}, wantLent: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var released atomic.Int32
			var bodyLen int64
			for _, p := range tc.body {
				bodyLen += int64(len(p))
			}
			f := &batchFrame{header: tc.header, body: tc.body, bodyLen: bodyLen, release: func() { released.Add(1) }}
			out, err := c.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			if !f.taken {
				t.Fatal("Marshal did not take the release")
			}
			lent := 0
			for _, b := range out {
				for _, p := range tc.body {
					if len(p) > 0 && len(b.ReadOnlyData()) == len(p) && &b.ReadOnlyData()[0] == &p[0] {
						lent++
					}
				}
			}
			if lent != tc.wantLent {
				t.Errorf("%d body pieces lent without copy; want %d", lent, tc.wantLent)
			}
			// The wire bytes are a FlightData the standard codec reads.
			var fd flight.FlightData
			if err := encoding.GetCodecV2(proto.Name).Unmarshal(out, &fd); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fd.DataHeader, tc.header) || !bytes.Equal(fd.DataBody, bytes.Join(tc.body, nil)) {
				t.Fatalf("decoded header %d bytes body %d bytes; want %d, %d", len(fd.DataHeader), len(fd.DataBody), len(tc.header), bodyLen)
			}
			// The raw reader agrees, across arbitrary buffer boundaries.
			var raw rawFlightData
			if err := (rawCodec{}).Unmarshal(out, &raw); err != nil || !bytes.Equal(raw.header, tc.header) || raw.bodyLen != bodyLen {
				t.Fatalf("raw read = %d header bytes, body %d, %v", len(raw.header), raw.bodyLen, err)
			}
			if tc.wantLent > 0 && released.Load() != 0 {
				t.Fatal("released before gRPC freed the buffers")
			}
			// gRPC frees each buffer, possibly holding extra references.
			for _, b := range out {
				b.Ref()
				b.Free()
			}
			if tc.wantLent > 0 && released.Load() != 0 {
				t.Fatal("released while references remain")
			}
			out.Free()
			if got := released.Load(); got != 1 {
				t.Fatalf("released %d times; want 1", got)
			}
		})
	}
}

func TestCodecMarshalBadLength(t *testing.T) {
	c, err := newFlightCodec()
	if err != nil {
		t.Fatal(err)
	}
	f := &batchFrame{header: []byte("h"), body: [][]byte{[]byte("abc")}, bodyLen: 4, release: func() {}}
	if _, err := c.Marshal(f); err == nil || f.taken {
		t.Fatalf("Marshal of a body shorter than announced = %v, taken %v; want error, not taken", err, f.taken)
	}
}

func TestCodecDelegates(t *testing.T) {
	c, err := newFlightCodec()
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Marshal(&flight.Ticket{Ticket: []byte("t")})
	if err != nil {
		t.Fatal(err)
	}
	var tk flight.Ticket
	if err := c.Unmarshal(out, &tk); err != nil || string(tk.Ticket) != "t" {
		t.Fatalf("round trip = %q, %v", tk.Ticket, err)
	}
}

func TestRecordBatchRows(t *testing.T) {
	schema, err := arrowio.NewSchema(arrowio.ImageSpec(2, 2, false), nil)
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, 12)
	m, err := arrowio.BatchMessage(schema, []uint64{1, 2, 3}, []int64{0, 0, 0}, [][]byte{img, img, img})
	if err != nil {
		t.Fatal(err)
	}
	rows, ok, err := recordBatchRows(m.Header)
	if err != nil || !ok || rows != 3 {
		t.Fatalf("recordBatchRows = %d, %v, %v; want 3 rows", rows, ok, err)
	}
	sm, err := arrowio.SchemaMessage(schema)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := recordBatchRows(sm); ok || err != nil {
		t.Fatalf("schema message: batch %v, %v; want not a batch", ok, err)
	}
	for _, junk := range [][]byte{nil, {1, 2}, {0xff, 0xff, 0xff, 0x7f}, bytes.Repeat([]byte{0xf0}, 64)} {
		if _, _, err := recordBatchRows(junk); err == nil {
			t.Errorf("recordBatchRows(%x) accepted junk", junk)
		}
	}
}

func FuzzRecordBatchRows(f *testing.F) {
	schema, err := arrowio.NewSchema(arrowio.ImageSpec(2, 2, false), nil)
	if err != nil {
		f.Fatal(err)
	}
	m, err := arrowio.BatchMessage(schema, []uint64{1}, []int64{0}, [][]byte{make([]byte, 12)})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(m.Header)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = recordBatchRows(b) // must not panic
	})
}

func FuzzRawUnmarshal(f *testing.F) {
	f.Add([]byte{0x12, 0x01, 'h', 0xc2, 0x3e, 0x02, 'a', 'b'}, 3)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		var s mem.BufferSlice
		if cut > 0 && cut < len(b) {
			s = mem.BufferSlice{mem.SliceBuffer(b[:cut]), mem.SliceBuffer(b[cut:])}
		} else {
			s = mem.BufferSlice{mem.SliceBuffer(b)}
		}
		var m rawFlightData
		_ = rawCodec{}.Unmarshal(s, &m) // must not panic
	})
}

// TestReleaseWhenDropped: buffers gRPC drops without freeing (a connection
// that dies mid-write) still release their batch, once, after GC.
func TestReleaseWhenDropped(t *testing.T) {
	c, err := newFlightCodec()
	if err != nil {
		t.Fatal(err)
	}
	var released atomic.Int32
	func() {
		f := &batchFrame{header: []byte("h"), body: [][]byte{bytes.Repeat([]byte{1}, 4096), bytes.Repeat([]byte{2}, 4096)},
			bodyLen: 8192, release: func() { released.Add(1) }}
		out, err := c.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		out[1].Free() // one piece written, the rest dropped
	}()
	deadline := time.Now().Add(5 * time.Second)
	for released.Load() == 0 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if got := released.Load(); got != 1 {
		t.Fatalf("released %d times; want 1", got)
	}
}
