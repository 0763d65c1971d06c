package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
)

// Request is a stream request: the JSON descriptor of a Flight call
// (SPEC §4), after defaults are filled in and every field is validated.
type Request struct {
	Dataset    string `json:"dataset"`
	Epoch      int    `json:"epoch"`
	BatchSize  int    `json:"batch_size"`
	Rank       int    `json:"rank"`
	WorldSize  int    `json:"world_size"`
	DropLast   bool   `json:"drop_last"`
	StartBatch int    `json:"start_batch"`
	Shuffle    bool   `json:"shuffle"`
	GPU        string `json:"gpu,omitempty"`
	// Fingerprint, when not empty, binds the request to that dataset
	// fingerprint: the transport sets it from a ticket, and a Source whose
	// dataset has another refuses the request with ErrStale (SPEC §4: a
	// ticket for a dataset that changed since). Never part of a descriptor.
	Fingerprint string `json:"-"`
	// Transport is "" (the ordinary stream of pixels; "flight" on the wire
	// is the same) or TransportLocal: plans naming cached shard files, for
	// a reader on the server's host (SPEC §9).
	Transport string `json:"transport,omitempty"`
}

// NewRequest is a request for dataset with the descriptor's defaults (SPEC
// §4): epoch 0, batch_size 256, rank 0 of world_size 1, drop_last false,
// start_batch 0, shuffle true. Request's zero value is not that: its
// BatchSize 0 is refused and its Shuffle false streams the epoch in order.
func NewRequest(dataset string) Request {
	return Request{Dataset: dataset, BatchSize: 256, WorldSize: 1, Shuffle: true}
}

// Values of Request.Transport and of the descriptor's "transport" field.
// TransportAuto is the clients' choice, never sent: local when the server
// allows it, else flight.
const (
	TransportFlight = "flight"
	TransportLocal  = "local"
	TransportAuto   = "auto"
)

// A Plan is what a Source promises for a Request before streaming it.
type Plan struct {
	Schema      *arrow.Schema // the stream's schema, metadata included
	Records     int64         // rows the stream yields: this rank's samples from StartBatch on
	Batches     int64         // record batches the stream yields
	Fingerprint string        // dataset fingerprint; a ticket is bound to it
}

// DatasetInfo describes one served dataset for ListFlights.
type DatasetInfo struct {
	Name         string
	Samples      int64
	Classes      []string
	Pipeline     string // canonical pipeline text
	Seed         uint64
	CachedEpochs []int // complete epochs in the cache
	Schema       *arrow.Schema
	Fingerprint  string
}

// A Batch is one training batch ready to send. Images[i] is the image
// tensor of row i (RowBytes long, in the layout of the schema's image
// column); it may alias memory the Source owns until Release is called.
type Batch struct {
	Index  []uint64
	Label  []int64
	Images [][]byte
	// Release, if not nil, is called exactly once, from any goroutine, when
	// nothing will read Images again (after gRPC has written them).
	Release func()
}

// Rows returns the number of rows in b.
func (b *Batch) Rows() int { return len(b.Index) }

// Source is what a transport streams from. loader.Loader implements it.
type Source interface {
	// Datasets lists the served datasets.
	Datasets(ctx context.Context) ([]DatasetInfo, error)
	// Plan validates req against the dataset (unknown dataset, unknown GPU)
	// and describes the stream it names.
	Plan(ctx context.Context, req Request) (Plan, error)
	// Stream calls send with each batch of req in order, starting at
	// req.StartBatch. It returns when the stream is complete, ctx is done, or
	// send fails; send's error is returned as is.
	Stream(ctx context.Context, req Request, send func(*Batch) error) error
}

// A PlanBatch is one training batch of a local stream (SPEC §9): for each
// row, in order, the sample's index and label and where its image lies:
// File, a path relative to the cache directory (slash-separated, never
// leaving it), holds the row's RowBytes image bytes at byte Offset, row Row
// of the record batch of that Arrow IPC file.
type PlanBatch struct {
	Index  []uint64
	Label  []int64
	File   []string
	Row    []int64
	Offset []int64
}

// Rows returns the number of rows in b.
func (b *PlanBatch) Rows() int { return len(b.Index) }

// LocalInfo is what a reader on the server's host needs before asking for
// plans: where the cache is, and the token (in the file TokenFile, relative
// to CacheDir) whose contents prove the reader can read it.
type LocalInfo struct {
	CacheDir  string // absolute
	TokenFile string // relative to CacheDir, slash-separated
	Token     string // the file's contents, without the newline
	BootID    string // the kernel's boot id: the same on the same host (and in its containers)
}

// A LocalSource serves local streams: plans instead of pixels (SPEC §9).
// loader.Loader implements it.
type LocalSource interface {
	// Local describes the cache for local readers; an error (wrapping
	// ErrNoLocal) says why there are none.
	Local() (LocalInfo, error)
	// StreamPlans calls send with each batch of req (Transport local) in
	// order, each row written before its batch is sent. Every file named
	// stays reachable under the name given, bytes unchanged, until release
	// is called, after the reader is done with the plans sent: release is
	// not nil whenever a plan may have been sent, whether or not err is
	// (a stream that fails midway ends with the error, after its batches).
	StreamPlans(ctx context.Context, req Request, send func(*PlanBatch) error) (release func(), err error)
}

// Actions are the DoAction verbs beyond streaming (SPEC §4). Results are
// marshalled to JSON as they are.
type Actions interface {
	// Precompute fills the cache with the epochs of a dataset, calling
	// progress as it works, and returns a summary when they are complete.
	Precompute(ctx context.Context, dataset string, epochs []int, progress func(PrecomputeProgress) error) (PrecomputeSummary, error)
	CacheStatus(ctx context.Context, dataset string) (CacheStatus, error)
	Evict(ctx context.Context, dataset string, epochs []int) (CacheStatus, error)
	// EvictOther frees the epochs of dataset the server does not read (the
	// Other of its DatasetCache), with all also those it reads: the
	// dataset's whole entry in the cache.
	EvictOther(ctx context.Context, dataset string, all bool) (CacheStatus, error)
	DatasetErrors(ctx context.Context, dataset string) ([]SampleError, error)
	// Rescan lists a dataset again ("" for all) and makes the new listing
	// current when its fingerprint changed (SPEC §4).
	Rescan(ctx context.Context, dataset string) (RescanResult, error)
	Topology(ctx context.Context) (Topology, error)
}

// Topology is the result of the topology action: the node's GPUs, NUMA
// nodes and CPU sets, and the placement of the workers. The fields hold the
// JSON of a *gpu.Topology (null when the server has none) and of a
// gpu.Placement; decode them with the gpu package's types. They stay JSON
// here so that this package, which every other imports, imports none of
// loaderd's.
type Topology struct {
	Topology  json.RawMessage `json:"topology"`
	Placement json.RawMessage `json:"placement"`
}

// PrecomputeProgress is one progress result of the precompute action.
type PrecomputeProgress struct {
	Dataset      string  `json:"dataset"`
	Epochs       []int   `json:"epochs"`
	Done         int64   `json:"done"`  // augmented samples written so far
	Total        int64   `json:"total"` // samples to write: len(Epochs) * N, less what was cached
	ImagesPerSec float64 `json:"images_per_sec"`
}

// PrecomputeSummary is the last result of the precompute action.
type PrecomputeSummary struct {
	Dataset  string `json:"dataset"`
	Epochs   []int  `json:"epochs"`
	Computed int64  `json:"computed"` // augmented samples computed by this call
	Cached   int64  `json:"cached"`   // samples that were already in the cache (complete shards)
	// Resumed counts the samples already written in partial shards (kept
	// by an interrupted run, or written meanwhile by a stream): neither
	// computed by this call nor counted in Cached.
	Resumed      int64   `json:"resumed"`
	Seconds      float64 `json:"seconds"`
	ImagesPerSec float64 `json:"images_per_sec"`
	Bytes        int64   `json:"bytes"` // bytes of the epochs on disk
}

// CacheStatus is the result of the cache-status and evict actions.
type CacheStatus struct {
	Datasets []DatasetCache `json:"datasets"`
	// Evicted says, for the evict action, what became of each epoch it
	// freed or was asked to free: its "epochs", and with "other" or "all"
	// the epochs those found (Other set for those the server does not
	// read). Omitted by cache-status.
	Evicted []EpochEviction `json:"evicted,omitempty"`
}

// EpochEviction is what the evict action did to one epoch of a dataset.
type EpochEviction struct {
	Dataset string `json:"dataset"`
	Epoch   int    `json:"epoch"`
	Result  string `json:"result"` // EvictFreed, EvictNotCached or EvictInUse
	// Other marks an epoch the server does not read (evict's "other" or
	// "all": of another pipeline, seed, decoder, shard size or listing).
	Other bool `json:"other,omitempty"`
}

// EpochEviction results.
const (
	EvictFreed     = "evicted"    // removed from the cache
	EvictNotCached = "not_cached" // the cache held nothing of it: nothing done
	EvictInUse     = "evicting"   // streamed or written now: freed when that ends (state EpochEvicting)
)

// DatasetCache lists the cached epochs of one dataset.
type DatasetCache struct {
	Dataset string        `json:"dataset"`
	Epochs  []EpochStatus `json:"epochs"`
	// Other lists the epochs of the same dataset (same fingerprint) that
	// the cache holds under another pipeline, decoder, shard size or seed:
	// this server never reads them. Omitted when there are none.
	Other []OtherEpochs `json:"other,omitempty"`
}

// OtherEpochs are cached epochs of a served dataset that the server does
// not read: under one (pipeline, seed) that is not the server's, or of an
// earlier listing of the dataset (Listing ListingEarlier: the same name and
// path, files that have changed since).
type OtherEpochs struct {
	Pipeline  string `json:"pipeline"`             // canonical text, or "fingerprint F" when unknown
	Decoder   string `json:"decoder,omitempty"`    // JPEG decoder of the pipeline, when known
	ShardSize int    `json:"shard_size,omitempty"` // samples per shard, when known
	Seed      uint64 `json:"seed"`
	Epochs    []int  `json:"epochs"` // sorted
	Bytes     int64  `json:"bytes"`  // on disk, all of Epochs
	// Of an earlier listing only:
	Listing     string `json:"listing,omitempty"`     // ListingEarlier; "" for the current listing
	Fingerprint string `json:"fingerprint,omitempty"` // that listing's dataset fingerprint
	Listed      string `json:"listed,omitempty"`      // when it was listed, RFC 3339
	Samples     int64  `json:"samples,omitempty"`     // its samples
}

// ListingEarlier is OtherEpochs.Listing for epochs of an earlier listing
// of the dataset: no request will read them again.
const ListingEarlier = "earlier"

// Epoch states in the cache.
const (
	EpochPartial  = "partial"
	EpochComplete = "complete"
	EpochEvicting = "evicting"
)

// EpochStatus is one epoch's presence in the cache.
type EpochStatus struct {
	Epoch int    `json:"epoch"`
	State string `json:"state"`
	// Bytes is what the epoch takes on disk and in --cache-budget: its
	// committed shards, and its partial ones (being written or suspended)
	// each at its full size from its first row.
	Bytes   int64 `json:"bytes"`
	Samples int64 `json:"samples"`
}

// RescanResult is the result of the rescan action: the listing of each
// dataset rescanned, in the order the server serves them.
type RescanResult struct {
	Datasets []DatasetListing `json:"datasets"`
}

// DatasetListing describes the current listing of a served dataset.
type DatasetListing struct {
	Dataset     string `json:"dataset"`
	Samples     int64  `json:"samples"`
	Classes     int    `json:"classes"`
	Fingerprint string `json:"fingerprint"`
	Changed     bool   `json:"changed"` // this rescan found the dataset changed
}

// SampleError reports one sample that could not be used, and why.
type SampleError struct {
	Index  int64  `json:"index"`
	Path   string `json:"path"`
	Kind   string `json:"kind"` // SampleUndecodable, SampleUnreadable or SampleChanged
	Reason string `json:"reason"`
}

// Kinds of SampleError (SPEC §5): the bytes are not a decodable image (or
// exceed a decoder limit); the file could not be read; the file changed or
// vanished since the dataset was listed. Only the first is a property of
// the file: dataset-errors lists those, scan all three.
const (
	SampleUndecodable = "undecodable"
	SampleUnreadable  = "unreadable"
	SampleChanged     = "changed"
)

// Errors a Source or Actions returns, wrapped with %w, and the gRPC codes
// the service answers with.
var (
	ErrInvalid     = errors.New("service: invalid argument")           // InvalidArgument
	ErrNotFound    = errors.New("service: not found")                  // NotFound
	ErrStale       = errors.New("service: dataset changed")            // FailedPrecondition
	ErrExhausted   = errors.New("service: resource exhausted")         // ResourceExhausted
	ErrUnavailable = errors.New("service: unavailable: shutting down") // Unavailable
	ErrDataLoss    = errors.New("service: undecodable sample")         // DataLoss
	// ErrUnreadable reports a sample file that could not be read (permission
	// denied, an I/O error, too many open files) after retries: not an
	// undecodable sample (SPEC §5), and nothing of it is cached.
	ErrUnreadable = errors.New("service: sample file unreadable") // Unavailable
)

// ErrNoLocal reports that a local stream cannot be served (the client is
// not on the server's host or cannot read its cache, or the cache cannot
// hold leases): FailedPrecondition, and the clients fall back to the
// ordinary stream.
var ErrNoLocal = errors.New("service: local transport unavailable")

// A FieldError reports an invalid request field. It wraps ErrInvalid.
type FieldError struct {
	Field  string // JSON name of the field
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("service: invalid %q: %s", e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }
