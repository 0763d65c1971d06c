package flightsvc

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// FlightData field tags (arrow/format/Flight.proto): 1 flight_descriptor,
// 2 data_header, 3 app_metadata, 1000 data_body; all length-delimited.
const (
	tagDataHeader = 2<<3 | 2
	tagDataBody   = 1000<<3 | 2
)

// copyBelow is the piece size up to which marshal copies a body piece into
// the framing buffer instead of lending it to gRPC: gRPC's mem.NewBuffer
// never calls the pool back for buffers this small.
const copyBelow = 1 << 10

// batchFrame is one record batch on its way to the wire: the IPC header and
// the body pieces (row slices the Source owns until release). It is a
// FlightData for the peer; only flightCodec knows how to marshal it.
type batchFrame struct {
	header  []byte
	body    [][]byte
	bodyLen int64
	release func()
	// taken is set by Marshal once it owns release: from then on gRPC's
	// frees (or Marshal itself) call it exactly once.
	taken bool
}

// flightCodec marshals a *batchFrame by hand, lending its body pieces to
// gRPC without concatenating them, and delegates every other message to
// the standard proto codec.
type flightCodec struct{ proto encoding.CodecV2 }

func newFlightCodec() (*flightCodec, error) {
	c := encoding.GetCodecV2(proto.Name)
	if c == nil {
		return nil, fmt.Errorf("flightsvc: no %q codec registered", proto.Name)
	}
	return &flightCodec{proto: c}, nil
}

func (c *flightCodec) Name() string { return proto.Name }

func (c *flightCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c *flightCodec) Marshal(v any) (mem.BufferSlice, error) {
	f, ok := v.(*batchFrame)
	if !ok {
		return c.proto.Marshal(v)
	}
	return f.marshal()
}

// marshal writes the protobuf framing of FlightData{data_header, data_body}
// and returns it with the large body pieces as separate buffers whose
// last free releases the batch.
func (f *batchFrame) marshal() (mem.BufferSlice, error) {
	var sum int64
	lent := int32(0)
	for _, p := range f.body {
		sum += int64(len(p))
		if len(p) > copyBelow {
			lent++
		}
	}
	if sum != f.bodyLen {
		return nil, fmt.Errorf("flightsvc: batch body pieces sum to %d bytes, header says %d", sum, f.bodyLen)
	}
	f.taken = true
	state := &releaseState{release: f.release}
	pool := &releasePool{state: state}
	pool.refs.Store(lent)
	if lent > 0 {
		// grpc-go frees the buffers of a stream it cleans up, but not
		// those queued on a connection that dies mid-write; once gRPC
		// drops them unfreed, the pool is garbage and this releases.
		runtime.AddCleanup(pool, (*releaseState).fire, state)
	}

	pending := make([]byte, 0, 2*binary.MaxVarintLen64+4+len(f.header))
	pending = binary.AppendUvarint(pending, tagDataHeader)
	pending = binary.AppendUvarint(pending, uint64(len(f.header)))
	pending = append(pending, f.header...)
	if f.bodyLen > 0 {
		pending = binary.AppendUvarint(pending, tagDataBody)
		pending = binary.AppendUvarint(pending, uint64(f.bodyLen))
	}
	out := make(mem.BufferSlice, 0, 2*lent+2)
	for _, p := range f.body {
		if len(p) <= copyBelow {
			pending = append(pending, p...)
			continue
		}
		if len(pending) > 0 {
			out = append(out, mem.SliceBuffer(pending))
			pending = nil
		}
		p := p
		out = append(out, mem.NewBuffer(&p, pool))
	}
	if len(pending) > 0 {
		out = append(out, mem.SliceBuffer(pending))
	}
	if lent == 0 {
		state.fire() // every piece was copied
	}
	return out, nil
}

// releasePool is the mem.BufferPool of one batch's lent pieces: gRPC puts
// each piece back when it no longer reads it, and the last Put releases the
// batch.
type releasePool struct {
	refs  atomic.Int32
	state *releaseState
}

// releaseState calls a batch's release once, from the last Put or from the
// pool's cleanup, whichever comes first.
type releaseState struct {
	done    atomic.Bool
	release func()
}

func (s *releaseState) fire() {
	if s.done.CompareAndSwap(false, true) {
		s.release()
	}
}

func (p *releasePool) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

func (p *releasePool) Put(*[]byte) {
	if p.refs.Add(-1) == 0 {
		p.state.fire()
	}
}
