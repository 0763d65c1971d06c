// Package flightsvc serves service.Source streams over Arrow Flight (SPEC §4)
// and provides the matching client used by `loaderd fetch` and the benchmarks.
//
// A descriptor is the strict JSON request of SPEC §4 (see ParseRequest).
// GetFlightInfo answers with one ordered endpoint whose ticket is the request
// and the dataset fingerprint, signed with HMAC-SHA256 under a key that
// survives restarts (LoadOrCreateKey). DoGet checks the signature, asks the
// Source for the stream and forwards each service.Batch as one FlightData
// without decoding or re-encoding the rows: a gRPC codec writes the
// protobuf framing by hand and hands the row slices to gRPC as separate
// mem.Buffers, so the only copy of a row is the one gRPC's framer makes.
//
// Ownership of batch memory: grpc-go v1.85's serverStream.SendMsg marshals
// the message, then http2Server.write takes its own reference on the
// buffers and queues them for the loopy writer goroutine; SendMsg returns
// before the bytes are written. A batch is therefore released from the
// BufferPool.Put of its last row buffer, called by gRPC when it has copied
// the last byte into the HTTP/2 framer (or dropped the stream). grpc-go
// does not free the buffers queued on a connection that dies mid-write; for
// those a runtime cleanup on the pool releases the batch once gRPC's
// references are garbage. Release is called exactly once per batch, never
// while gRPC can still read the rows.
//
// Sends are synchronous: a slow client fills gRPC's per-stream write quota
// and the Source's send callback blocks, so nothing buffers without bound.
//
// A Server is safe for concurrent use; Serve owns every goroutine it starts
// and returns only after draining.
//
// The client side: Dial returns a Client whose Fetch streams a request's
// record batches (GetFlightInfo, then DoGet on each endpoint in order), and
// whose FetchTensors hands each batch to Go code as Tensors: gorgonia.org/tensor
// views over the received Arrow buffers, shape (B,H,W,C) uint8 or (B,C,H,W)
// float32, without a copy.
package flightsvc
