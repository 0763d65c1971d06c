// Package service is loaderd's service contract, whatever the transport:
// what a client asks for (a Request for one rank's batches of an epoch,
// or an action on the cache), what the server promises (a Plan) and sends
// (a Batch), and the errors both sides agree on.
//
// A Source streams batches and an Actions runs the DoAction verbs of
// SPEC §4; loader.Loader implements both, and the Flight transport
// (arrowio/flightsvc) serves them and maps the sentinel errors (ErrInvalid,
// ErrNotFound, ErrStale, ErrExhausted, ErrUnavailable, ErrDataLoss) to
// gRPC status codes. Results of the actions (CacheStatus,
// PrecomputeProgress, PrecomputeSummary, SampleError, Topology) marshal to
// the JSON of SPEC §4 as they are.
//
// The package is a leaf of loaderd's import graph: it imports no other
// loaderd package, so every package can speak the contract without
// depending on its implementation. Arrow enters only as the *arrow.Schema of
// a Plan; the Arrow formats themselves live in arrowio.
package service
