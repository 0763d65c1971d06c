package loader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"golang.org/x/sys/unix"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/gpu"
	"github.com/loaderd/loaderd/service"
)

func TestPlan(t *testing.T) {
	root := fxDataset(t, 23)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	d, _ := l.Dataset("train")
	tests := []struct {
		name    string
		req     service.Request
		wantErr error
		field   string
	}{
		{name: "full epoch", req: fxReq(func(r *service.Request) { r.Epoch = 9; r.BatchSize = 5 })},
		{name: "rank with start_batch", req: fxReq(func(r *service.Request) { r.Rank, r.WorldSize, r.BatchSize, r.StartBatch = 1, 2, 4, 1 })},
		{name: "unknown dataset", req: fxReq(func(r *service.Request) { r.Dataset = "val" }), wantErr: service.ErrNotFound},
		{name: "rank beyond world", req: fxReq(func(r *service.Request) { r.Rank = 1 }), wantErr: service.ErrInvalid, field: "rank"},
		{name: "gpu without topology", req: fxReq(func(r *service.Request) { r.GPU = "0" }), wantErr: service.ErrInvalid, field: "gpu"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := l.Plan(context.Background(), tc.req)
			if tc.wantErr != nil {
				var fe *service.FieldError
				if !errors.Is(err, tc.wantErr) || (tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field)) {
					t.Fatalf("Plan = %v; want %v on field %q", err, tc.wantErr, tc.field)
				}
				if serr := l.Stream(context.Background(), tc.req, func(*service.Batch) error { return nil }); !errors.Is(serr, tc.wantErr) {
					t.Fatalf("Stream = %v; want %v", serr, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			o, _ := NewOrder(23, 42, tc.req)
			if p.Records != o.Records() || p.Batches != int64(o.Batches()) || p.Fingerprint != d.Fingerprint {
				t.Fatalf("plan %d records %d batches fp %s; want %d %d %s", p.Records, p.Batches, p.Fingerprint, o.Records(), o.Batches(), d.Fingerprint)
			}
			md := p.Schema.Metadata()
			for k, want := range map[string]string{
				"loaderd.dataset": "train", "loaderd.dataset_fingerprint": d.Fingerprint,
				"loaderd.pipeline": l.pipe.String(), "loaderd.seed": "42", "loaderd.epoch": itoa(tc.req.Epoch),
			} {
				if got, _ := md.GetValue(k); got != want {
					t.Fatalf("schema metadata %s = %q, want %q", k, got, want)
				}
			}
			got, err := fxCollect(context.Background(), l, tc.req)
			if err != nil || int64(len(got.Index)) != p.Records || int64(len(got.Batches)) != p.Batches {
				t.Fatalf("stream gave %d rows %d batches (%v); plan said %d %d", len(got.Index), len(got.Batches), err, p.Records, p.Batches)
			}
		})
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestDatasetsInfo(t *testing.T) {
	root := fxDataset(t, 10)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	if _, err := l.Precompute(context.Background(), "train", []int{1, 3}, nil); err != nil {
		t.Fatal(err)
	}
	infos, err := l.Datasets(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 1 {
		t.Fatalf("%d datasets, want 1", len(infos))
	}
	in := infos[0]
	if in.Name != "train" || in.Samples != 10 || !slices.Equal(in.Classes, []string{"c0", "c1", "c2"}) ||
		!slices.Equal(in.CachedEpochs, []int{1, 3}) || in.Seed != 42 || in.Pipeline != l.pipe.String() || in.Schema == nil {
		t.Fatalf("dataset info %+v", in)
	}
	if _, err := l.CacheStatus(context.Background(), "val"); !errors.Is(err, service.ErrNotFound) {
		t.Fatalf("cache status of unknown dataset = %v", err)
	}
	all, err := l.CacheStatus(context.Background(), "")
	if err != nil || len(all.Datasets) != 1 || len(all.Datasets[0].Epochs) != 2 {
		t.Fatalf("cache status of all = %+v, %v", all, err)
	}
	if _, err := l.DatasetErrors(context.Background(), "val"); !errors.Is(err, service.ErrNotFound) {
		t.Fatalf("dataset errors of unknown dataset = %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	root := fxDataset(t, 3)
	c := fxCache(t, "", 0)
	good := fxLoader(t, root, c, nil).opts
	tests := []struct {
		name string
		mod  func(*Options)
	}{
		{name: "no pipeline", mod: func(o *Options) { o.Pipeline = nil }},
		{name: "no cache", mod: func(o *Options) { o.Cache = nil }},
		{name: "no dataset", mod: func(o *Options) { o.Datasets = nil }},
		{name: "bad policy", mod: func(o *Options) { o.OnError = "skip" }},
		{name: "negative workers", mod: func(o *Options) { o.Workers = -1 }},
		{name: "repeated name", mod: func(o *Options) { o.Datasets = append(o.Datasets, o.Datasets[0]) }},
		{name: "missing root", mod: func(o *Options) { o.Datasets = []DatasetSpec{{Name: "x", Path: "/nonexistent"}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := good
			o.Datasets = slices.Clone(good.Datasets)
			tc.mod(&o)
			if l, err := New(context.Background(), &o); err == nil {
				l.Close()
				t.Fatal("New accepted bad options")
			}
		})
	}
}

// fxTopology is a node with two GPUs, next to the first and the last CPU
// this process may use.
func fxTopology(t *testing.T) *gpu.Topology {
	cpus := fxAllowedCPUs(t)
	return &gpu.Topology{
		Source: gpu.SourceSysfs,
		Devices: []gpu.Device{
			{Index: 0, UUID: "GPU-aaaa", PCIBusID: "0000:3b:00.0", NUMANode: 0, CPUs: cpus[:1]},
			{Index: 1, UUID: "GPU-bbbb", PCIBusID: "0000:86:00.0", NUMANode: 1, CPUs: cpus[len(cpus)-1:]},
		},
		CPUs: cpus,
	}
}

func TestGPUPlacement(t *testing.T) {
	root := fxDataset(t, 25)
	want := fxEpoch(t, root, 0, nil)
	l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.Topology = fxTopology(t); o.Workers = 2 })
	for _, id := range []string{"1", "GPU-aaaa", "0000:86:00.0", ""} {
		_, pool, _, err := func() (*dataset, int, *Order, error) {
			d, o, pool, err := l.resolve(fxReq(func(r *service.Request) { r.GPU = id }))
			return d, pool, o, err
		}()
		if err != nil {
			t.Fatalf("gpu %q: %v", id, err)
		}
		wantPool := l.placement.PoolFor(-1)
		switch id {
		case "1", "0000:86:00.0":
			wantPool = l.placement.PoolFor(1)
		case "GPU-aaaa":
			wantPool = l.placement.PoolFor(0)
		}
		if pool != wantPool {
			t.Fatalf("gpu %q served by pool %d, want %d", id, pool, wantPool)
		}
		got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.GPU = id }))
		if err != nil {
			t.Fatalf("gpu %q: %v", id, err)
		}
		fxSame(t, "pinned pool", want, got)
	}
	// GPU 1's workers run on its CPUs only; the default pool is not pinned.
	for _, tc := range []struct {
		gpu  int
		want []int
	}{{gpu: 1, want: l.opts.Topology.Devices[1].CPUs}, {gpu: -1, want: fxAllowedCPUs(t)}} {
		got := make(chan []int, 1)
		ok := l.sched.Submit(context.Background(), l.placement.PoolFor(tc.gpu), true, func() { got <- fxAllowedCPUs(t) })
		if !ok {
			t.Fatal("submit failed")
		}
		if cpus := <-got; !slices.Equal(cpus, tc.want) {
			t.Fatalf("worker of GPU %d runs on CPUs %v, want %v", tc.gpu, cpus, tc.want)
		}
	}
	_, err := l.Plan(context.Background(), fxReq(func(r *service.Request) { r.GPU = "7" }))
	var fe *service.FieldError
	if !errors.Is(err, service.ErrInvalid) || !errors.As(err, &fe) || fe.Field != "gpu" {
		t.Fatalf("unknown GPU: %v, want invalid field gpu", err)
	}
	topo, err := l.Topology(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(topo)
	if err != nil || !strings.Contains(string(b), `"GPU-bbbb"`) || !strings.Contains(string(b), `"placement"`) {
		t.Fatalf("topology JSON %s, %v", b, err)
	}
}

// TestBatchesAsRecords builds Arrow records from streamed batches with a
// checked allocator: the rows fit the schema and nothing leaks.
func TestBatchesAsRecords(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	root := fxDataset(t, 12)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	req := fxReq(func(r *service.Request) { r.BatchSize = 5 })
	p, err := l.Plan(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := arrowio.NewBatchBuilder(mem, p.Schema, 5)
	if err != nil {
		t.Fatal(err)
	}
	defer bb.Release()
	rows := 0
	err = l.Stream(context.Background(), req, func(b *service.Batch) error {
		defer b.Release()
		for r := range b.Rows() {
			if err := bb.Append(b.Index[r], b.Label[r], b.Images[r]); err != nil {
				return err
			}
		}
		rec := bb.NewRecord()
		defer rec.Release()
		imgs, err := arrowio.ImagesOf(rec)
		if err != nil {
			return err
		}
		if !bytes.Equal(imgs, bytes.Join(b.Images, nil)) {
			t.Error("record images differ from the batch")
		}
		idx := rec.Column(0).(*array.Uint64).Values()
		if !slices.Equal(idx, b.Index) {
			t.Errorf("record index %v, batch %v", idx, b.Index)
		}
		rows += int(rec.NumRows())
		return nil
	})
	if err != nil || rows != 12 {
		t.Fatalf("stream: %d rows, %v", rows, err)
	}
}

// fxAllowedCPUs returns the CPUs the calling thread may run on.
func fxAllowedCPUs(t *testing.T) []int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Error(err)
		return nil
	}
	var cpus []int
	for c := range 1024 {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}
