// Package arrowio holds loaderd's Arrow formats: the fixed_shape_tensor
// extension type, the record schema, the fixed-layout shard files of the
// cache and the IPC messages sent as Flight data. It knows nothing of the
// service: the Flight transport is arrowio/flightsvc, and the requests and
// batches it serves are package service's.
//
// A record has three non-nullable columns: index uint64, label int64 and
// image, Arrow's canonical "arrow.fixed_shape_tensor" extension over
// FixedSizeList<uint8>[H*W*3] (shape [H,W,3]) or FixedSizeList<float32>
// (shape [3,H,W]). NewSchema builds it from a RowSpec; SpecOf checks it.
//
// A shard is an Arrow IPC file holding one record batch. Its ShardLayout,
// a function of the schema and the row count alone, gives the offset of
// every value, so rows are written straight into a mapping of the file,
// in any order, and read back in place by OpenShard, which rejects any file
// whose bytes outside the values differ from the layout.
//
// The send path never re-encodes pixels: BatchMessage turns a batch's
// columns into the IPC record batch message header (cached per row count)
// and a list of body pieces that alias the rows; SchemaMessage is the schema
// message sent first. They are the DataHeader and DataBody of Flight data,
// byte for byte what flight.NewRecordWriter would send.
//
// BatchBuilder and ImagesOf build and read arrow records for Go clients and
// tests.
package arrowio
