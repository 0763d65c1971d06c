package flightsvc

import (
	"errors"
	"strings"
	"testing"

	"github.com/loaderd/loaderd/service"
)

func TestParseRequest(t *testing.T) {
	def := service.Request{Dataset: "train", BatchSize: 256, WorldSize: 1, Shuffle: true}
	tests := []struct {
		name      string
		cmd       string
		want      service.Request
		wantField string // "" with wantErr: malformed
		wantErr   bool
	}{
		{name: "defaults", cmd: `{"dataset":"train"}`, want: def},
		{name: "all fields", cmd: `{"dataset":"val","epoch":3,"batch_size":32,"rank":1,"world_size":4,"drop_last":true,"start_batch":5,"shuffle":false,"gpu":"GPU-1"}`,
			want: service.Request{Dataset: "val", Epoch: 3, BatchSize: 32, Rank: 1, WorldSize: 4, DropLast: true, StartBatch: 5, GPU: "GPU-1"}},
		{name: "limits", cmd: `{"dataset":"d","epoch":2147483647,"batch_size":65536,"rank":65535,"world_size":65536}`,
			want: service.Request{Dataset: "d", Epoch: 2147483647, BatchSize: 65536, Rank: 65535, WorldSize: 65536, Shuffle: true}},
		{name: "whitespace", cmd: " \n{ \"dataset\" : \"train\" }\t", want: def},
		{name: "missing dataset", cmd: `{"epoch":1}`, wantErr: true, wantField: "dataset"},
		{name: "empty dataset", cmd: `{"dataset":""}`, wantErr: true, wantField: "dataset"},
		{name: "dataset not string", cmd: `{"dataset":5}`, wantErr: true, wantField: "dataset"},
		{name: "unknown field", cmd: `{"dataset":"train","epochs":1}`, wantErr: true, wantField: "epochs"},
		{name: "epoch string", cmd: `{"dataset":"train","epoch":"1"}`, wantErr: true, wantField: "epoch"},
		{name: "epoch fraction", cmd: `{"dataset":"train","epoch":1.5}`, wantErr: true, wantField: "epoch"},
		{name: "epoch exponent", cmd: `{"dataset":"train","epoch":1e3}`, wantErr: true, wantField: "epoch"},
		{name: "epoch null", cmd: `{"dataset":"train","epoch":null}`, wantErr: true, wantField: "epoch"},
		{name: "epoch negative", cmd: `{"dataset":"train","epoch":-1}`, wantErr: true, wantField: "epoch"},
		{name: "epoch 2^31", cmd: `{"dataset":"train","epoch":2147483648}`, wantErr: true, wantField: "epoch"},
		{name: "epoch huge", cmd: `{"dataset":"train","epoch":123456789012345678901234567890}`, wantErr: true, wantField: "epoch"},
		{name: "batch_size 0", cmd: `{"dataset":"train","batch_size":0}`, wantErr: true, wantField: "batch_size"},
		{name: "batch_size too big", cmd: `{"dataset":"train","batch_size":65537}`, wantErr: true, wantField: "batch_size"},
		{name: "batch_size bool", cmd: `{"dataset":"train","batch_size":true}`, wantErr: true, wantField: "batch_size"},
		{name: "rank negative", cmd: `{"dataset":"train","rank":-1}`, wantErr: true, wantField: "rank"},
		{name: "rank equals world_size", cmd: `{"dataset":"train","rank":2,"world_size":2}`, wantErr: true, wantField: "rank"},
		{name: "rank above default world_size", cmd: `{"dataset":"train","rank":1}`, wantErr: true, wantField: "rank"},
		{name: "world_size 0", cmd: `{"dataset":"train","world_size":0}`, wantErr: true, wantField: "world_size"},
		{name: "world_size too big", cmd: `{"dataset":"train","world_size":65537}`, wantErr: true, wantField: "world_size"},
		{name: "drop_last number", cmd: `{"dataset":"train","drop_last":1}`, wantErr: true, wantField: "drop_last"},
		{name: "start_batch negative", cmd: `{"dataset":"train","start_batch":-3}`, wantErr: true, wantField: "start_batch"},
		{name: "shuffle string", cmd: `{"dataset":"train","shuffle":"yes"}`, wantErr: true, wantField: "shuffle"},
		{name: "gpu number", cmd: `{"dataset":"train","gpu":3}`, wantErr: true, wantField: "gpu"},
		{name: "not JSON", cmd: `dataset=train`, wantErr: true},
		{name: "array", cmd: `["train"]`, wantErr: true},
		{name: "empty", cmd: ``, wantErr: true},
		{name: "trailing garbage", cmd: `{"dataset":"train"} x`, wantErr: true},
		{name: "truncated", cmd: `{"dataset":"tr`, wantErr: true},
		{name: "invalid UTF-8", cmd: "{\"dataset\":\"\xff\"}", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseRequest([]byte(tc.cmd))
			if !tc.wantErr {
				if err != nil || got != tc.want {
					t.Fatalf("ParseRequest(%s) = %+v, %v; want %+v", tc.cmd, got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, service.ErrInvalid) {
				t.Fatalf("ParseRequest(%s) error = %v; want ErrInvalid", tc.cmd, err)
			}
			var fe *service.FieldError
			if tc.wantField == "" {
				return
			}
			if !errors.As(err, &fe) || fe.Field != tc.wantField {
				t.Fatalf("ParseRequest(%s) error = %v; want a FieldError on %q", tc.cmd, err, tc.wantField)
			}
			if !strings.Contains(err.Error(), tc.wantField) {
				t.Fatalf("error %q does not name %q", err, tc.wantField)
			}
		})
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"dataset":"train"}`, `{"dataset":"x","epoch":1,"rank":3,"world_size":4}`, `{`, `null`, `{"gpu":"0"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseRequest(b)
		if err != nil {
			if !errors.Is(err, service.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if req.Dataset == "" || req.Rank >= req.WorldSize || req.BatchSize < 1 || req.Epoch < 0 || req.StartBatch < 0 {
			t.Fatalf("accepted invalid request %+v", req)
		}
	})
}

// TestNewRequestIsTheDescriptorsDefaults: service.NewRequest, the Go
// client's starting point, is what a descriptor naming only the dataset
// parses to (SPEC §4's defaults).
func TestNewRequestIsTheDescriptorsDefaults(t *testing.T) {
	got, err := ParseRequest([]byte(`{"dataset":"d"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := service.Request{Dataset: "d", BatchSize: 256, WorldSize: 1, Shuffle: true}
	if got != want || service.NewRequest("d") != want {
		t.Fatalf("ParseRequest = %+v, NewRequest = %+v; want %+v", got, service.NewRequest("d"), want)
	}
}
