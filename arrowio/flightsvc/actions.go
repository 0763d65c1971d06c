package flightsvc

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/service"
)

// The DoAction verbs (SPEC §4).
const (
	ActionPrecompute    = "precompute"
	ActionCacheStatus   = "cache-status"
	ActionEvict         = "evict"
	ActionDatasetErrors = "dataset-errors"
	ActionTopology      = "topology"
	ActionRescan        = "rescan"
)

var actionTypes = []*flight.ActionType{
	{Type: ActionPrecompute, Description: `{"dataset","epochs":[...]}: fill the cache with those epochs; streams progress results, then a summary. Idempotent.`},
	{Type: ActionCacheStatus, Description: `empty body or {"dataset"}: the cached epochs, their state (partial, complete, evicting), bytes and samples.`},
	{Type: ActionEvict, Description: `{"dataset","epochs":[...]}: free those epochs (an epoch being streamed is freed when its streams end); {"dataset","other":true}: the epochs cache-status lists under "other" (other pipelines or seeds, earlier listings), with or without epochs; {"dataset","all":true}: every cached epoch of the dataset. Returns the cache status.`},
	{Type: ActionDatasetErrors, Description: `{"dataset"}: the samples that could not be decoded: index, path, reason.`},
	{Type: ActionTopology, Description: `GPUs, NUMA nodes, CPU sets and the placement in use.`},
	{Type: ActionRescan, Description: `empty body or {"dataset"}: list the dataset(s) again now; new requests see a changed listing, older tickets get FailedPrecondition. Returns {"datasets":[{"dataset","samples","classes","fingerprint","changed"}]}.`},
}

// localActionType describes ActionLocalInfo, listed when the Source
// serves local streams.
var localActionType = &flight.ActionType{Type: ActionLocalInfo,
	Description: `empty body: for readers on the server's host (local transport): {"cache_dir","token_file","boot_id"}; FailedPrecondition when the server serves no local streams.`}

// ListActions lists the DoAction verbs: those of Options.Actions (none when
// it is nil), and ActionLocalInfo when the Source serves local streams.
func (v *handler) ListActions(_ *flight.Empty, st flight.FlightService_ListActionsServer) error {
	if _, ok := v.s.opts.Source.(service.LocalSource); ok {
		if err := st.Send(localActionType); err != nil {
			return err
		}
	}
	if v.s.opts.Actions == nil {
		return nil
	}
	for _, a := range actionTypes {
		if err := st.Send(a); err != nil {
			return err
		}
	}
	return nil
}

// actionBody is a parsed action body.
type actionBody struct {
	dataset    string
	epochs     []int
	other, all bool // evict only
}

// parseActionBody parses {"dataset","epochs"} strictly; needDataset and
// needEpochs say which fields are required (and allowed, for epochs).
func parseActionBody(body []byte, needDataset, allowEpochs bool) (actionBody, error) {
	return parseBody(body, needDataset, allowEpochs, false)
}

// parseEvictBody parses the evict action's body: {"dataset"} with
// "epochs", "other" or both, or "all" alone.
func parseEvictBody(body []byte) (actionBody, error) {
	b, err := parseBody(body, true, false, true)
	switch {
	case err != nil:
		return b, err
	case b.all && (b.other || len(b.epochs) > 0):
		return b, &service.FieldError{Field: "all", Reason: `every epoch: give it without "epochs" or "other"`}
	case !b.all && !b.other && len(b.epochs) == 0:
		return b, &service.FieldError{Field: "epochs", Reason: `required, a non-empty list (or "other": true, or "all": true)`}
	}
	return b, nil
}

// parseBody parses an action body strictly: "dataset" (required with
// needDataset), "epochs" (required with needEpochs; allowed with evict),
// and evict's "other" and "all".
func parseBody(body []byte, needDataset, allowEpochs, evict bool) (actionBody, error) {
	var out actionBody
	if len(body) == 0 && !needDataset && !allowEpochs {
		return out, nil
	}
	fields, err := strictObject(body, "action body")
	if err != nil {
		return out, err
	}
	for _, name := range sortedKeys(fields) {
		switch {
		case name == "dataset":
			out.dataset, err = stringField(name, fields[name])
		case name == "epochs" && (allowEpochs || evict):
			out.epochs, err = intListField(name, fields[name], 0, maxEpoch)
		case name == "other" && evict:
			out.other, err = boolField(name, fields[name])
		case name == "all" && evict:
			out.all, err = boolField(name, fields[name])
		default:
			err = &service.FieldError{Field: name, Reason: "unknown field"}
		}
		if err != nil {
			return out, err
		}
	}
	if needDataset && out.dataset == "" {
		return out, &service.FieldError{Field: "dataset", Reason: "required"}
	}
	if allowEpochs && len(out.epochs) == 0 {
		return out, &service.FieldError{Field: "epochs", Reason: "required, a non-empty list"}
	}
	return out, nil
}

func sendJSON(st flight.FlightService_DoActionServer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("flightsvc: action result: %w", err)
	}
	return st.Send(&flight.Result{Body: b})
}

func (v *handler) DoAction(a *flight.Action, st flight.FlightService_DoActionServer) error {
	if a.GetType() == ActionLocalInfo {
		return StatusOf(v.localInfo(a, st))
	}
	acts := v.s.opts.Actions
	if acts == nil {
		return status.Errorf(codes.Unimplemented, "flightsvc: actions are not served here")
	}
	ctx := st.Context()
	return StatusOf(v.doAction(ctx, acts, a, st))
}

func (v *handler) doAction(ctx context.Context, acts service.Actions, a *flight.Action, st flight.FlightService_DoActionServer) error {
	switch a.GetType() {
	case ActionPrecompute:
		b, err := parseActionBody(a.GetBody(), true, true)
		if err != nil {
			return err
		}
		sum, err := acts.Precompute(ctx, b.dataset, b.epochs, func(p service.PrecomputeProgress) error {
			return sendJSON(st, p)
		})
		if err != nil {
			return err
		}
		return sendJSON(st, sum)
	case ActionCacheStatus:
		b, err := parseActionBody(a.GetBody(), false, false)
		if err != nil {
			return err
		}
		cs, err := acts.CacheStatus(ctx, b.dataset)
		if err != nil {
			return err
		}
		if cs.Datasets == nil {
			cs.Datasets = []service.DatasetCache{}
		}
		return sendJSON(st, cs)
	case ActionEvict:
		b, err := parseEvictBody(a.GetBody())
		if err != nil {
			return err
		}
		var cs service.CacheStatus
		if len(b.epochs) > 0 {
			if cs, err = acts.Evict(ctx, b.dataset, b.epochs); err != nil {
				return err
			}
		}
		if b.other || b.all {
			evicted := cs.Evicted // those of b.epochs, kept with EvictOther's
			if cs, err = acts.EvictOther(ctx, b.dataset, b.all); err != nil {
				return err
			}
			cs.Evicted = append(evicted, cs.Evicted...)
		}
		if cs.Datasets == nil {
			cs.Datasets = []service.DatasetCache{}
		}
		return sendJSON(st, cs)
	case ActionDatasetErrors:
		b, err := parseActionBody(a.GetBody(), true, false)
		if err != nil {
			return err
		}
		errs, err := acts.DatasetErrors(ctx, b.dataset)
		if err != nil {
			return err
		}
		if errs == nil {
			errs = []service.SampleError{}
		}
		return sendJSON(st, errs)
	case ActionRescan:
		b, err := parseActionBody(a.GetBody(), false, false)
		if err != nil {
			return err
		}
		res, err := acts.Rescan(ctx, b.dataset)
		if err != nil {
			return err
		}
		if res.Datasets == nil {
			res.Datasets = []service.DatasetListing{}
		}
		return sendJSON(st, res)
	case ActionTopology:
		if len(a.GetBody()) != 0 {
			if _, err := strictObject(a.GetBody(), "action body"); err != nil {
				return err
			}
		}
		topo, err := acts.Topology(ctx)
		if err != nil {
			return err
		}
		return sendJSON(st, topo)
	default:
		return fmt.Errorf("flightsvc: unknown action %q (ListActions lists them): %w", a.GetType(), service.ErrInvalid)
	}
}
