package loader

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/service"
)

// fxLocalReader reads plans as a trainer on the host does: it opens each
// file a plan names, in the cache directory, and reads the row's bytes.
type fxLocalReader struct {
	t        testing.TB
	dir      string // the cache directory
	rowBytes int
	got      fxRows
	files    []string // every name the plans gave
}

func (r *fxLocalReader) read(p *service.PlanBatch) error {
	r.t.Helper()
	n := p.Rows()
	if len(p.Label) != n || len(p.File) != n || len(p.Row) != n || len(p.Offset) != n {
		r.t.Fatalf("plan columns of unequal length: %d %d %d %d %d", n, len(p.Label), len(p.File), len(p.Row), len(p.Offset))
	}
	r.got.Batches = append(r.got.Batches, n)
	r.got.Index = append(r.got.Index, p.Index...)
	r.got.Label = append(r.got.Label, p.Label...)
	for row, name := range p.File {
		if !filepath.IsLocal(filepath.FromSlash(name)) {
			r.t.Fatalf("plan names %q, outside the cache directory", name)
		}
		f, err := os.Open(filepath.Join(r.dir, filepath.FromSlash(name)))
		if err != nil {
			return err
		}
		img := make([]byte, r.rowBytes)
		_, err = f.ReadAt(img, p.Offset[row])
		f.Close()
		if err != nil {
			return err
		}
		r.got.Images = append(r.got.Images, img)
		r.files = append(r.files, name)
	}
	return nil
}

// leases lists the lease directories in the cache directory.
func fxLeases(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "local", "lease-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func fxPlans(t testing.TB, l *Loader, dir string, req service.Request) (*fxLocalReader, error) {
	t.Helper()
	r := &fxLocalReader{t: t, dir: dir, rowBytes: l.pipe.RowBytes()}
	release, err := l.StreamPlans(context.Background(), req, r.read)
	if release != nil {
		release()
	}
	if left := fxLeases(t, dir); len(left) != 0 {
		t.Fatalf("leases after release: %v", left)
	}
	return r, err
}

// TestStreamPlansMatchStream: for every request shape, cold and warm, the
// rows a local reader assembles from the plans are the rows of the
// ordinary stream, in its order, and the files plans name were written
// when they were named (the reader reads them inside send).
func TestStreamPlansMatchStream(t *testing.T) {
	const n = 53
	root := fxDataset(t, n)
	want := fxEpoch(t, root, 3, nil)
	tests := []struct {
		name string
		req  func(*service.Request)
	}{
		{name: "shuffled, batch 7"},
		{name: "index order", req: func(r *service.Request) { r.Shuffle = false }},
		{name: "batch 1", req: func(r *service.Request) { r.BatchSize = 1 }},
		{name: "batch larger than the epoch", req: func(r *service.Request) { r.BatchSize = 500 }},
		{name: "rank 2 of 3", req: func(r *service.Request) { r.Rank, r.WorldSize = 2, 3 }},
		{name: "rank 3 of 4, drop_last", req: func(r *service.Request) { r.Rank, r.WorldSize, r.DropLast = 3, 4, true }},
		{name: "start_batch 3", req: func(r *service.Request) { r.StartBatch = 3 }},
		{name: "rank 1 of 2, start_batch 2, drop_last", req: func(r *service.Request) { r.Rank, r.WorldSize, r.StartBatch, r.DropLast = 1, 2, 2, true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := fxLoader(t, root, fxCache(t, dir, 0), func(o *Options) { o.Workers = 3 })
			req := fxReq(func(r *service.Request) {
				r.Epoch = 3
				if tc.req != nil {
					tc.req(r)
				}
			})
			stream, err := fxCollect(context.Background(), fxLoader(t, root, fxCache(t, "", 0), nil), req)
			if err != nil {
				t.Fatal(err)
			}
			req.Transport = service.TransportLocal
			for _, pass := range []string{"cold", "warm"} {
				if pass == "warm" { // a rank computes only its rows: complete the epoch
					if _, err := l.Precompute(context.Background(), "train", []int{3}, nil); err != nil {
						t.Fatal(err)
					}
				}
				computed := fxComputed(l, workStream)
				r, err := fxPlans(t, l, dir, req)
				if err != nil {
					t.Fatalf("%s: %v", pass, err)
				}
				fxSame(t, pass, want, r.got)
				if !slices.Equal(r.got.Index, stream.Index) || !slices.Equal(r.got.Label, stream.Label) || !slices.Equal(r.got.Batches, stream.Batches) {
					t.Fatalf("%s: plans give order %v batches %v, the stream %v %v", pass, r.got.Index, r.got.Batches, stream.Index, stream.Batches)
				}
				partial := slices.ContainsFunc(r.files, writing)
				if pass == "warm" && (partial || fxComputed(l, workStream) != computed) {
					t.Errorf("warm plans name a shard being written, or rows were computed")
				}
			}
		})
	}
}

// TestStreamPlansNamePartialShards: a cold shuffled stream's first plan
// names shards still being written (waiting for whole shards would delay
// the first batch by most of an epoch); each named row reads as an Arrow
// IPC file's row, before and after the shard's commit renames it.
func TestStreamPlansNamePartialShards(t *testing.T) {
	root := fxDataset(t, 53)
	want := fxEpoch(t, root, 0, nil)
	dir := t.TempDir()
	l := fxLoader(t, root, fxCache(t, dir, 0), nil)
	schema, err := l.schema(l.sets["train"].current(), 0)
	if err != nil {
		t.Fatal(err)
	}
	r := &fxLocalReader{t: t, dir: dir, rowBytes: l.pipe.RowBytes()}
	var first *service.PlanBatch
	release, err := l.StreamPlans(context.Background(), fxReq(func(r *service.Request) { r.Transport = service.TransportLocal }),
		func(p *service.PlanBatch) error {
			if first == nil {
				first = p
			}
			return r.read(p)
		})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	fxSame(t, "cold plans", want, r.got)
	if !slices.ContainsFunc(first.File, writing) {
		t.Fatalf("the first plan of a cold shuffled epoch names only committed shards: %v", first.File)
	}
	// After the stream, every shard is committed (renamed); the names the
	// plans gave still open as Arrow IPC files whose row Row is the row.
	fxPoll(t, "epoch complete", func() bool { return fxStatus(t, l)[0] == service.EpochComplete })
	for row, name := range first.File {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		rd, err := ipc.NewFileReader(f, ipc.WithAllocator(memory.DefaultAllocator), ipc.WithSchema(schema))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rec, err := rd.RecordBatch(0)
		if err != nil {
			t.Fatal(err)
		}
		imgs, err := arrowio.ImagesOf(rec)
		if err != nil {
			t.Fatal(err)
		}
		rb := l.pipe.RowBytes()
		p := int(first.Row[row])
		if !bytes.Equal(imgs[p*rb:(p+1)*rb], want[first.Index[row]]) {
			t.Errorf("%s row %d is not sample %d", name, p, first.Index[row])
		}
		rd.Close()
		f.Close()
	}
}

// TestStreamPlansUnderEviction: evicting the epoch while a local stream
// reads it waits for the stream's release, and a shard file removed from
// the cache (as eviction or repair would) stays readable under the plan's
// name.
func TestStreamPlansUnderEviction(t *testing.T) {
	root := fxDataset(t, 40)
	want := fxEpoch(t, root, 0, nil)
	dir := t.TempDir()
	l := fxLoader(t, root, fxCache(t, dir, 0), nil)
	if _, err := l.Precompute(context.Background(), "train", []int{0}, nil); err != nil {
		t.Fatal(err)
	}
	r := &fxLocalReader{t: t, dir: dir, rowBytes: l.pipe.RowBytes()}
	var plans []*service.PlanBatch
	batch := 0
	release, err := l.StreamPlans(context.Background(), fxReq(func(r *service.Request) { r.BatchSize = 5; r.Transport = service.TransportLocal }),
		func(p *service.PlanBatch) error {
			plans = append(plans, p)
			if batch++; batch == 2 {
				if _, err := l.Evict(context.Background(), "train", []int{0}); err != nil {
					return err
				}
				if s := fxStatus(t, l)[0]; s != service.EpochEvicting {
					t.Errorf("epoch read by a local stream after evict is %q, want evicting", s)
				}
				// Unlink every cache name, as a repair would unlink a shard.
				shards, _ := filepath.Glob(filepath.Join(dir, "e-*", "shard-*.arrow"))
				for _, s := range shards {
					if err := os.Remove(s); err != nil {
						return err
					}
				}
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range plans { // read after the stream: only the lease keeps the files
		if err := r.read(p); err != nil {
			t.Fatalf("reading a plan after its files were unlinked from the cache: %v", err)
		}
	}
	fxSame(t, "plans read after eviction", want, r.got)
	if st := fxStatus(t, l); st[0] != service.EpochEvicting {
		t.Fatalf("before release: %v, want epoch 0 evicting", st)
	}
	release()
	if st := fxStatus(t, l); len(st) != 0 {
		t.Fatalf("after release: %v, want the epoch gone", st)
	}
	if left := fxLeases(t, dir); len(left) != 0 {
		t.Fatalf("leases after release: %v", left)
	}
}

// TestStreamPlansRepairCorruptShard: a corrupt shard found by a local
// stream is deleted and recomputed; its rows are named in the new shard's
// file (being written) and read as fresh.
func TestStreamPlansRepairCorruptShard(t *testing.T) {
	root, dir := fxDataset(t, 40), t.TempDir()
	want := fxEpoch(t, root, 0, nil)
	fxCorruptShard1(t, root, dir)
	l2 := fxLoader(t, root, fxCache(t, dir, 0), nil)
	r, err := fxPlans(t, l2, dir, fxReq(func(r *service.Request) { r.Transport = service.TransportLocal }))
	if err != nil {
		t.Fatal(err)
	}
	fxSame(t, "plans after a corrupt shard", want, r.got)
	if c := fxComputed(l2, workStream); c != 16 {
		t.Fatalf("recomputed %d rows, want the 16 of the corrupt shard", c)
	}
	if !slices.ContainsFunc(r.files, func(f string) bool { return strings.Contains(f, "shard-000001.") && writing(f) }) {
		t.Errorf("no plan named the recomputed shard 1 while it was written: %v", r.files)
	}
}

func TestStreamPlansCancelReleases(t *testing.T) {
	root := fxDataset(t, 40)
	dir := t.TempDir()
	l := fxLoader(t, root, fxCache(t, dir, 0), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	release, err := l.StreamPlans(ctx, fxReq(func(r *service.Request) { r.BatchSize = 4; r.Transport = service.TransportLocal }),
		func(*service.PlanBatch) error {
			if n++; n == 2 {
				cancel() // the client went away
			}
			return nil
		})
	if !errors.Is(err, context.Canceled) || release == nil {
		t.Fatalf("StreamPlans after cancel = %v (release %v), want context.Canceled and a release", err, release != nil)
	}
	if left := fxLeases(t, dir); len(left) != 1 {
		t.Fatalf("leases before release: %v, want the stream's", left)
	}
	release()
	if left := fxLeases(t, dir); len(left) != 0 {
		t.Fatalf("leases after a cancelled stream: %v", left)
	}
	for _, e := range l.cache.Epochs() {
		if e.Pinned {
			t.Fatalf("epoch %d still pinned after a cancelled stream", e.Key.Epoch)
		}
	}
}

func TestStreamPlansRefused(t *testing.T) {
	root := fxDataset(t, 40)
	l := fxLoader(t, root, fxCache(t, "", 1000), nil) // budget below one epoch
	req := fxReq(func(r *service.Request) { r.Transport = service.TransportLocal })
	if _, err := l.Plan(context.Background(), req); !errors.Is(err, service.ErrNoLocal) {
		t.Errorf("Plan of a local stream of an uncacheable epoch = %v, want ErrNoLocal", err)
	}
	if _, err := l.StreamPlans(context.Background(), req, func(*service.PlanBatch) error { return nil }); !errors.Is(err, service.ErrNoLocal) {
		t.Errorf("StreamPlans of an uncacheable epoch = %v, want ErrNoLocal", err)
	}
	req.Transport = ""
	if _, err := l.Plan(context.Background(), req); err != nil {
		t.Errorf("Plan of the ordinary stream = %v", err)
	}
	l2 := fxLoader(t, root, fxCache(t, "", 0), nil)
	info, err := l2.Local()
	if err != nil || !filepath.IsAbs(info.CacheDir) || info.Token == "" || info.TokenFile != "local/token" {
		t.Fatalf("Local() = %+v, %v", info, err)
	}
	b, err := os.ReadFile(filepath.Join(info.CacheDir, info.TokenFile))
	if err != nil || strings.TrimSpace(string(b)) != info.Token {
		t.Fatalf("token file %q, %v; want the token", b, err)
	}
}

// writing reports whether a plan's file is a shard being written: its
// partial file (shardcache/partial.go), or a temporary one.
func writing(f string) bool { return strings.HasSuffix(f, ".partial") || strings.HasSuffix(f, ".tmp") }
