package flightsvc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"unicode/utf8"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
)

// Limits of a request (SPEC §4).
const (
	maxBatchSize = 65536
	maxWorldSize = 65536
	maxEpoch     = math.MaxInt32 // epoch < 2^31
	// maxRecordBatch bounds the FlightData of one record batch: gRPC's C++
	// core, hence pyarrow's Flight client, reads no message of 2 GiB or more
	// (its length is an int), and Protobuf no message over 2 GiB.
	maxRecordBatch = math.MaxInt32
	// flightDataFraming is the Protobuf framing FlightData adds around the
	// IPC header and body: a tag and a length of up to 5 bytes for each.
	flightDataFraming = 2 * (1 + 5)
)

// ParseRequest parses the JSON descriptor of a Flight call (SPEC §4):
// only "dataset" is required; the other fields take their defaults
// (epoch 0, batch_size 256, rank 0, world_size 1, drop_last false,
// start_batch 0, shuffle true, transport "flight", stored as ""). Unknown fields, wrong types and values out
// of range are reported as a *service.FieldError naming the field ("rank"
// when rank ≥ world_size); malformed JSON wraps service.ErrInvalid.
func ParseRequest(cmd []byte) (service.Request, error) {
	req := service.NewRequest("")
	fields, err := strictObject(cmd, "descriptor")
	if err != nil {
		return service.Request{}, err
	}
	for _, name := range sortedKeys(fields) {
		raw := fields[name]
		switch name {
		case "dataset":
			req.Dataset, err = stringField(name, raw)
		case "epoch":
			req.Epoch, err = intField(name, raw, 0, maxEpoch)
		case "batch_size":
			req.BatchSize, err = intField(name, raw, 1, maxBatchSize)
		case "rank":
			req.Rank, err = intField(name, raw, 0, maxWorldSize-1)
		case "world_size":
			req.WorldSize, err = intField(name, raw, 1, maxWorldSize)
		case "drop_last":
			req.DropLast, err = boolField(name, raw)
		case "start_batch":
			req.StartBatch, err = intField(name, raw, 0, math.MaxInt32)
		case "shuffle":
			req.Shuffle, err = boolField(name, raw)
		case "gpu":
			req.GPU, err = stringField(name, raw)
		case "transport":
			req.Transport, err = transportField(name, raw)
		default:
			err = &service.FieldError{Field: name, Reason: "unknown field"}
		}
		if err != nil {
			return service.Request{}, err
		}
	}
	if _, ok := fields["dataset"]; !ok {
		return service.Request{}, &service.FieldError{Field: "dataset", Reason: "required"}
	}
	if req.Dataset == "" {
		return service.Request{}, &service.FieldError{Field: "dataset", Reason: "must not be empty"}
	}
	if req.Rank >= req.WorldSize {
		return service.Request{}, &service.FieldError{Field: "rank",
			Reason: fmt.Sprintf("%d is not below world_size %d", req.Rank, req.WorldSize)}
	}
	return req, nil
}

// checkBatchBytes refuses a request whose largest record batch, as the
// plan says it will really hold (batch_size rows, or fewer when the stream
// has fewer), would not fit a FlightData message pyarrow can read
// (maxRecordBatch). So batch_size 65536 over 120 samples is one batch of 120
// rows and passes, and the error names the largest batch_size that fits.
func checkBatchBytes(req service.Request, p service.Plan) error {
	rows := min(int64(req.BatchSize), p.Records)
	if rows <= 0 {
		return nil
	}
	size, err := arrowio.BatchMessageSize(p.Schema, int(rows))
	if err != nil {
		return fmt.Errorf("flightsvc: Source schema: %w", err)
	}
	if size+flightDataFraming <= maxRecordBatch {
		return nil
	}
	most, err := arrowio.MaxBatchRows(p.Schema, maxRecordBatch-flightDataFraming, int(rows))
	if err != nil {
		return fmt.Errorf("flightsvc: Source schema: %w", err)
	}
	return &service.FieldError{Field: "batch_size", Reason: fmt.Sprintf(
		"a batch of %d rows is a %d-byte record batch, over the 2 GiB one Flight message may hold (pyarrow cannot read it); the largest batch_size that fits is %d",
		rows, size, most)}
}

// strictObject decodes data as one JSON object; what names the document in
// errors.
func strictObject(data []byte, what string) (map[string]json.RawMessage, error) {
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("flightsvc: %s is not UTF-8: %w", what, service.ErrInvalid)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, fmt.Errorf("flightsvc: %s is not a JSON object: %w", what, service.ErrInvalid)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return nil, fmt.Errorf("flightsvc: %s is malformed JSON (%s): %w", what, err.Error(), service.ErrInvalid)
	}
	return fields, nil
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

func stringField(name string, raw json.RawMessage) (string, error) {
	var s string
	if isNull(raw) || json.Unmarshal(raw, &s) != nil {
		return "", &service.FieldError{Field: name, Reason: "must be a string"}
	}
	return s, nil
}

// transportField decodes "transport": "flight" (stored as "") or "local".
func transportField(name string, raw json.RawMessage) (string, error) {
	v, err := stringField(name, raw)
	switch {
	case err != nil:
		return "", err
	case v == service.TransportFlight:
		return "", nil
	case v == service.TransportLocal:
		return v, nil
	}
	return "", &service.FieldError{Field: name, Reason: fmt.Sprintf("%q: want \"flight\" or \"local\"", v)}
}

func boolField(name string, raw json.RawMessage) (bool, error) {
	var b bool
	if isNull(raw) || json.Unmarshal(raw, &b) != nil {
		return false, &service.FieldError{Field: name, Reason: "must be true or false"}
	}
	return b, nil
}

// intField decodes an integer in [lo, hi]. 3.0 and 1e3 are not integers.
func intField(name string, raw json.RawMessage, lo, hi int64) (int, error) {
	var n json.Number
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || (t[0] != '-' && (t[0] < '0' || t[0] > '9')) || json.Unmarshal(t, &n) != nil {
		return 0, &service.FieldError{Field: name, Reason: "must be an integer"}
	}
	v, err := n.Int64()
	if err != nil {
		if _, ferr := n.Float64(); ferr == nil && !bytes.ContainsAny([]byte(n), ".eE") {
			// An integer too large for int64: out of range, not a wrong type.
			return 0, &service.FieldError{Field: name, Reason: fmt.Sprintf("must be in [%d, %d]", lo, hi)}
		}
		return 0, &service.FieldError{Field: name, Reason: "must be an integer"}
	}
	if v < lo || v > hi {
		return 0, &service.FieldError{Field: name, Reason: fmt.Sprintf("%d is not in [%d, %d]", v, lo, hi)}
	}
	return int(v), nil
}

// intListField decodes a non-empty list of integers in [lo, hi].
func intListField(name string, raw json.RawMessage, lo, hi int64) ([]int, error) {
	var items []json.RawMessage
	if isNull(raw) || json.Unmarshal(raw, &items) != nil {
		return nil, &service.FieldError{Field: name, Reason: "must be a list of integers"}
	}
	out := make([]int, len(items))
	for i, it := range items {
		v, err := intField(name, it, lo, hi)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}
