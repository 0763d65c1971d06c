package flightsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/flight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/service"
)

type fakeActions struct {
	mu    sync.Mutex
	calls []string
}

func (a *fakeActions) record(s string) {
	a.mu.Lock()
	a.calls = append(a.calls, s)
	a.mu.Unlock()
}

func (a *fakeActions) Precompute(_ context.Context, ds string, epochs []int, progress func(service.PrecomputeProgress) error) (service.PrecomputeSummary, error) {
	a.record(fmt.Sprintf("precompute %s %v", ds, epochs))
	if ds != "train" {
		return service.PrecomputeSummary{}, fmt.Errorf("fake: %q: %w", ds, service.ErrNotFound)
	}
	for done := int64(5); done <= 10; done += 5 {
		if err := progress(service.PrecomputeProgress{Dataset: ds, Epochs: epochs, Done: done, Total: 10}); err != nil {
			return service.PrecomputeSummary{}, err
		}
	}
	return service.PrecomputeSummary{Dataset: ds, Epochs: epochs, Computed: 10, Bytes: 1234}, nil
}

func (a *fakeActions) CacheStatus(_ context.Context, ds string) (service.CacheStatus, error) {
	a.record("cache-status " + ds)
	return service.CacheStatus{Datasets: []service.DatasetCache{{Dataset: "train",
		Epochs: []service.EpochStatus{{Epoch: 0, State: service.EpochComplete, Bytes: 100, Samples: 10}}}}}, nil
}

func (a *fakeActions) Evict(_ context.Context, ds string, epochs []int) (service.CacheStatus, error) {
	a.record(fmt.Sprintf("evict %s %v", ds, epochs))
	return service.CacheStatus{}, nil
}

func (a *fakeActions) EvictOther(_ context.Context, ds string, all bool) (service.CacheStatus, error) {
	a.record(fmt.Sprintf("evict-other %s all=%v", ds, all))
	return service.CacheStatus{}, nil
}

func (a *fakeActions) DatasetErrors(_ context.Context, ds string) ([]service.SampleError, error) {
	a.record("dataset-errors " + ds)
	return []service.SampleError{{Index: 3, Path: "cat/3.jpg", Kind: service.SampleUndecodable, Reason: "truncated"}}, nil
}

func (a *fakeActions) Rescan(_ context.Context, ds string) (service.RescanResult, error) {
	a.record("rescan " + ds)
	if ds != "" && ds != "train" {
		return service.RescanResult{}, fmt.Errorf("fake: %q: %w", ds, service.ErrNotFound)
	}
	return service.RescanResult{Datasets: []service.DatasetListing{{Dataset: "train", Samples: 11, Classes: 2, Fingerprint: "fp2", Changed: true}}}, nil
}

func (a *fakeActions) Topology(context.Context) (service.Topology, error) {
	a.record("topology")
	return service.Topology{Topology: json.RawMessage(`{"gpus":[]}`), Placement: json.RawMessage(`{}`)}, nil
}

func TestActions(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	t.Run("none", func(t *testing.T) {
		addr, _ := startServer(t, &Options{Source: f})
		cl, err := Dial(testCtx(t), addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		st, err := cl.Flight().ListActions(testCtx(t), &flight.Empty{})
		if err != nil {
			t.Fatal(err)
		}
		if a, err := st.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("ListActions without Actions = %v, %v; want none", a, err)
		}
		_, err = cl.Action(testCtx(t), ActionTopology, nil)
		wantCode(t, err, codes.Unimplemented, "")
	})
	acts := &fakeActions{}
	addr, _ := startServer(t, &Options{Source: f, Actions: acts})
	cl, err := Dial(testCtx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	st, err := cl.Flight().ListActions(testCtx(t), &flight.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		a, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if a.Description == "" {
			t.Errorf("action %s has no description", a.Type)
		}
		names = append(names, a.Type)
	}
	sort.Strings(names)
	if fmt.Sprint(names) != "[cache-status dataset-errors evict precompute rescan topology]" {
		t.Errorf("ListActions = %v", names)
	}

	tests := []struct {
		name     string
		typ      string
		body     string
		want     []string // result bodies
		code     codes.Code
		contains string
		call     string
	}{
		{name: "precompute", typ: ActionPrecompute, body: `{"dataset":"train","epochs":[1,2]}`, call: "precompute train [1 2]",
			want: []string{
				`{"dataset":"train","epochs":[1,2],"done":5,"total":10,"images_per_sec":0}`,
				`{"dataset":"train","epochs":[1,2],"done":10,"total":10,"images_per_sec":0}`,
				`{"dataset":"train","epochs":[1,2],"computed":10,"cached":0,"resumed":0,"seconds":0,"images_per_sec":0,"bytes":1234}`}},
		{name: "precompute unknown dataset", typ: ActionPrecompute, body: `{"dataset":"x","epochs":[0]}`, code: codes.NotFound, call: "precompute x [0]"},
		{name: "precompute no epochs", typ: ActionPrecompute, body: `{"dataset":"train"}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "precompute bad epoch", typ: ActionPrecompute, body: `{"dataset":"train","epochs":[-1]}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "precompute epochs type", typ: ActionPrecompute, body: `{"dataset":"train","epochs":"0-9"}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "cache-status empty body", typ: ActionCacheStatus, call: "cache-status ",
			want: []string{`{"datasets":[{"dataset":"train","epochs":[{"epoch":0,"state":"complete","bytes":100,"samples":10}]}]}`}},
		{name: "cache-status dataset", typ: ActionCacheStatus, body: `{"dataset":"train"}`, call: "cache-status train",
			want: []string{`{"datasets":[{"dataset":"train","epochs":[{"epoch":0,"state":"complete","bytes":100,"samples":10}]}]}`}},
		{name: "cache-status unknown field", typ: ActionCacheStatus, body: `{"epochs":[1]}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "evict", typ: ActionEvict, body: `{"dataset":"train","epochs":[0]}`, call: "evict train [0]", want: []string{`{"datasets":[]}`}},
		{name: "evict no dataset", typ: ActionEvict, body: `{"epochs":[0]}`, code: codes.InvalidArgument, contains: "dataset"},
		{name: "evict other", typ: ActionEvict, body: `{"dataset":"train","other":true}`, call: "evict-other train all=false", want: []string{`{"datasets":[]}`}},
		{name: "evict all", typ: ActionEvict, body: `{"dataset":"train","all":true}`, call: "evict-other train all=true", want: []string{`{"datasets":[]}`}},
		{name: "evict nothing named", typ: ActionEvict, body: `{"dataset":"train"}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "evict all and epochs", typ: ActionEvict, body: `{"dataset":"train","all":true,"epochs":[0]}`, code: codes.InvalidArgument, contains: "all"},
		{name: "evict other not a bool", typ: ActionEvict, body: `{"dataset":"train","other":1}`, code: codes.InvalidArgument, contains: "other"},
		{name: "precompute other", typ: ActionPrecompute, body: `{"dataset":"train","epochs":[0],"other":true}`, code: codes.InvalidArgument, contains: "other"},
		{name: "dataset-errors", typ: ActionDatasetErrors, body: `{"dataset":"train"}`, call: "dataset-errors train",
			want: []string{`[{"index":3,"path":"cat/3.jpg","kind":"undecodable","reason":"truncated"}]`}},
		{name: "dataset-errors malformed", typ: ActionDatasetErrors, body: `{"dataset":`, code: codes.InvalidArgument},
		{name: "topology", typ: ActionTopology, call: "topology", want: []string{`{"topology":{"gpus":[]},"placement":{}}`}},
		{name: "rescan all", typ: ActionRescan, call: "rescan ",
			want: []string{`{"datasets":[{"dataset":"train","samples":11,"classes":2,"fingerprint":"fp2","changed":true}]}`}},
		{name: "rescan dataset", typ: ActionRescan, body: `{"dataset":"train"}`, call: "rescan train",
			want: []string{`{"datasets":[{"dataset":"train","samples":11,"classes":2,"fingerprint":"fp2","changed":true}]}`}},
		{name: "rescan unknown dataset", typ: ActionRescan, body: `{"dataset":"x"}`, code: codes.NotFound, call: "rescan x"},
		{name: "rescan unknown field", typ: ActionRescan, body: `{"epochs":[0]}`, code: codes.InvalidArgument, contains: "epochs"},
		{name: "unknown action", typ: "reboot", code: codes.InvalidArgument, contains: "reboot"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			acts.mu.Lock()
			acts.calls = nil
			acts.mu.Unlock()
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			got, err := cl.Action(testCtx(t), tc.typ, body)
			if tc.code != codes.OK {
				wantCode(t, err, tc.code, tc.contains)
			} else if err != nil {
				t.Fatal(err)
			}
			for i := range max(len(got), len(tc.want)) {
				if i >= len(got) || i >= len(tc.want) || string(got[i]) != tc.want[i] {
					t.Fatalf("results %q; want %q", got, tc.want)
				}
			}
			acts.mu.Lock()
			calls := fmt.Sprint(acts.calls)
			acts.mu.Unlock()
			if want := fmt.Sprint([]string{tc.call}); tc.call != "" && calls != want || tc.call == "" && calls != "[]" {
				t.Errorf("Actions calls %s; want %q", calls, tc.call)
			}
			for _, g := range got {
				if !json.Valid(g) {
					t.Errorf("result %q is not JSON", g)
				}
			}
		})
	}
}

// TestClientRescan: the Go client's Rescan sends the rescan action and
// decodes its result.
func TestClientRescan(t *testing.T) {
	acts := &fakeActions{}
	addr, _ := startServer(t, &Options{Source: newFakeSource(t, 10, 2, 2), Actions: acts})
	cl, err := Dial(testCtx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	res, err := cl.Rescan(testCtx(t), "train")
	if err != nil {
		t.Fatal(err)
	}
	want := service.DatasetListing{Dataset: "train", Samples: 11, Classes: 2, Fingerprint: "fp2", Changed: true}
	if len(res.Datasets) != 1 || res.Datasets[0] != want {
		t.Fatalf("Rescan = %+v; want %+v", res, want)
	}
	if _, err := cl.Rescan(testCtx(t), "nope"); status.Code(err) != codes.NotFound {
		t.Fatalf("Rescan of an unknown dataset = %v; want NotFound", err)
	}
	acts.mu.Lock()
	defer acts.mu.Unlock()
	if fmt.Sprint(acts.calls) != "[rescan train rescan nope]" {
		t.Fatalf("calls %v", acts.calls)
	}
}

// TestClientActions: the Go client's CacheStatus, Evict and DatasetErrors
// send their actions with the bodies they name and decode the results.
func TestClientActions(t *testing.T) {
	acts := &fakeActions{}
	addr, _ := startServer(t, &Options{Source: newFakeSource(t, 10, 2, 2), Actions: acts})
	cl, err := Dial(testCtx(t), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testCtx(t)
	cs, err := cl.CacheStatus(ctx, "")
	if err != nil || len(cs.Datasets) != 1 || cs.Datasets[0].Epochs[0].Samples != 10 {
		t.Fatalf("CacheStatus = %+v, %v", cs, err)
	}
	for _, ev := range []Eviction{{Dataset: "train", Epochs: []int{1, 2}}, {Dataset: "train", Other: true}, {Dataset: "train", All: true}} {
		if _, err := cl.Evict(ctx, ev); err != nil {
			t.Fatalf("Evict(%+v): %v", ev, err)
		}
	}
	if _, err := cl.Evict(ctx, Eviction{Dataset: "train"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Evict of nothing = %v; want InvalidArgument", err)
	}
	errs, err := cl.DatasetErrors(ctx, "train")
	if err != nil || len(errs) != 1 || errs[0].Path != "cat/3.jpg" || errs[0].Kind != service.SampleUndecodable {
		t.Fatalf("DatasetErrors = %+v, %v", errs, err)
	}
	acts.mu.Lock()
	defer acts.mu.Unlock()
	if got := fmt.Sprint(acts.calls); got != "[cache-status  evict train [1 2] evict-other train all=false evict-other train all=true dataset-errors train]" {
		t.Errorf("calls %s", got)
	}
}
