// Package arrowio holds loaderd's Arrow formats and its Flight service: the
// fixed_shape_tensor extension type, the record schema, the fixed-layout
// shard files of the cache, the IPC messages sent as Flight data, and the
// Flight server that streams batches from a Source.
package arrowio
