package loader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loaderd/loaderd/service"
)

// noticeWithin is how soon SPEC §4 wants a change on a local file system
// seen by new requests.
const noticeWithin = 5 * time.Second

// fxRun runs l.Run until the test ends.
func fxRun(t *testing.T, l *Loader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := l.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// fxNotice waits until a plan of "train" has a fingerprint other than old,
// failing after noticeWithin, and returns the new plan.
func fxNotice(t *testing.T, l *Loader, old string) service.Plan {
	t.Helper()
	start := time.Now()
	for {
		p, err := l.Plan(context.Background(), fxReq(nil))
		if err != nil {
			t.Fatal(err)
		}
		if p.Fingerprint != old {
			t.Logf("change noticed after %v", time.Since(start).Round(time.Millisecond))
			return p
		}
		if time.Since(start) > noticeWithin {
			t.Fatalf("the change was not noticed within %v", noticeWithin)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A change is what a test does to a dataset tree: it returns the sample
// index of the old listing it touched (-1: none) and the new sample count.
type change struct {
	name string
	// do changes root; n is the listing's sample count, old its listing.
	do func(t *testing.T, root string, old *Dataset) (touched, samples int)
}

// The changes of SPEC §4: a file added, removed, rewritten in place.
var changes = []change{
	{name: "add", do: func(t *testing.T, root string, old *Dataset) (int, int) {
		if err := os.WriteFile(filepath.Join(root, "c1", "zz-new.png"), fxImage(1000, 20), 0o644); err != nil {
			t.Fatal(err)
		}
		return -1, old.Len() + 1
	}},
	{name: "remove", do: func(t *testing.T, root string, old *Dataset) (int, int) {
		i := old.Len() - 1
		if err := os.Remove(old.File(i)); err != nil {
			t.Fatal(err)
		}
		return i, old.Len() - 1
	}},
	{name: "rewrite in place", do: func(t *testing.T, root string, old *Dataset) (int, int) {
		i := old.Len() - 1
		f, err := os.OpenFile(old.File(i), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(fxImage(2000, 20)); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return i, old.Len()
	}},
}

// fxOldTimes sets every file's mtime an hour back, so that a rewrite in
// place within the file system's timestamp granularity still moves it.
func fxOldTimes(t *testing.T, root string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDatasetChanges: a file added, removed or rewritten while loaderd
// serves is noticed within 5 s (SPEC §4): new requests see the new listing
// and fingerprint and get its bytes; a request bound to the old fingerprint
// (an old ticket) is refused with ErrStale.
func TestDatasetChanges(t *testing.T) {
	for _, ch := range changes {
		t.Run(ch.name, func(t *testing.T) {
			root := fxDataset(t, 30)
			fxOldTimes(t, root)
			l := fxLoader(t, root, fxCache(t, "", 0), nil)
			fxRun(t, l)
			old, _ := l.Dataset("train")
			p0, err := l.Plan(context.Background(), fxReq(nil))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fxCollect(context.Background(), l, fxReq(nil)); err != nil { // the old epoch, cached
				t.Fatal(err)
			}
			_, samples := ch.do(t, root, old)
			p1 := fxNotice(t, l, p0.Fingerprint)
			if p1.Records != int64(samples) {
				t.Fatalf("new plan: %d records; want %d", p1.Records, samples)
			}
			cur, _ := l.Dataset("train")
			if cur.Fingerprint != p1.Fingerprint || p1.Schema.Metadata().FindKey("loaderd.dataset_fingerprint") < 0 {
				t.Fatalf("listing fingerprint %s, plan %s", cur.Fingerprint, p1.Fingerprint)
			}
			stale := fxReq(func(r *service.Request) { r.Fingerprint = p0.Fingerprint })
			if _, err := fxCollect(context.Background(), l, stale); !errors.Is(err, service.ErrStale) {
				t.Fatalf("request bound to the old fingerprint = %v; want ErrStale", err)
			}
			got, err := fxCollect(context.Background(), l, fxReq(func(r *service.Request) { r.Fingerprint = p1.Fingerprint }))
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Index) != samples {
				t.Fatalf("new stream: %d rows; want %d", len(got.Index), samples)
			}
			fxSame(t, "after the change", fxEpoch(t, root, 0, nil), got)
			if c := testutilChanges(l); c != 1 {
				t.Fatalf("loaderd_dataset_changes_total = %v; want 1", c)
			}
		})
	}
}

// TestStreamAcrossChange: a stream that started before a change keeps its
// listing while the files it reads are unchanged (an added file changes
// nothing it reads), and ends with FailedPrecondition naming the file when
// a file it still needs was removed or rewritten. Nothing computed from a
// file's new bytes is stored under the old fingerprint.
func TestStreamAcrossChange(t *testing.T) {
	for _, ch := range changes {
		t.Run(ch.name, func(t *testing.T) {
			root := fxDataset(t, 30)
			fxOldTimes(t, root)
			want := fxEpoch(t, root, 0, nil)
			freshDir := t.TempDir()
			fresh := fxLoader(t, root, fxCache(t, freshDir, 0), nil)
			if _, err := fresh.Precompute(context.Background(), "train", []int{0}, nil); err != nil {
				t.Fatal(err)
			}
			freshFiles := fxShardFiles(t, freshDir)

			dir := t.TempDir()
			l := fxLoader(t, root, fxCache(t, dir, 0), nil)
			fxRun(t, l)
			old, _ := l.Dataset("train")
			// In index order, 6 batches of 5: the last sample is read last,
			// long after the first batch.
			req := fxReq(func(r *service.Request) { r.Shuffle, r.BatchSize, r.Fingerprint = false, 5, old.Fingerprint })
			first, resume := make(chan struct{}), make(chan struct{})
			var got fxRows
			done := make(chan error, 1)
			go func() {
				done <- l.Stream(context.Background(), req, func(b *service.Batch) error {
					got.Index = append(got.Index, b.Index...)
					for _, img := range b.Images {
						got.Images = append(got.Images, bytes.Clone(img))
					}
					b.Release()
					if len(got.Index) == 5 {
						close(first)
						<-resume
					}
					return nil
				})
			}()
			<-first
			touched, _ := ch.do(t, root, old)
			fxNotice(t, l, old.Fingerprint)
			close(resume)
			err := <-done
			if touched < 0 {
				if err != nil {
					t.Fatalf("stream across an added file: %v; want its old listing to the end", err)
				}
				if len(got.Index) != old.Len() {
					t.Fatalf("stream across an added file: %d rows; want %d", len(got.Index), old.Len())
				}
			} else if !errors.Is(err, service.ErrStale) || !strings.Contains(err.Error(), old.Samples[touched].Path) {
				t.Fatalf("stream across a %s = %v; want ErrStale naming %s", ch.name, err, old.Samples[touched].Path)
			}
			fxSame(t, "rows streamed across the change", want, got)
			// Every shard the old listing committed is one a fresh cache of
			// the old files holds.
			l.commits.Wait()
			for _, f := range fxShardFiles(t, dir) {
				if strings.HasPrefix(f, keyDir(l, old)) && !slices.Contains(freshFiles, f) {
					t.Fatalf("shard %s of the old listing holds bytes a fresh cache does not", f)
				}
			}
		})
	}
}

// keyDir is the prefix of the cache directory of epoch 0 of listing d.
func keyDir(l *Loader, d *Dataset) string {
	return l.key(&dataset{Dataset: d, pipeKey: l.sets[d.Name].pipeKey}, 0).Name()
}

// TestManifestChange: rewriting a manifest (atomically, as editors and
// scripts do) is a change too.
func TestManifestChange(t *testing.T) {
	root := fxDataset(t, 12)
	d, err := OpenDataset("probe", root)
	if err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(root, "list.tsv")
	write := func(n int) {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "%s\t%d\n", d.Samples[i].Path, d.Samples[i].Label)
		}
		tmp := manifest + ".tmp"
		if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, manifest); err != nil {
			t.Fatal(err)
		}
	}
	write(10)
	l := fxLoader(t, manifest, fxCache(t, "", 0), nil)
	fxRun(t, l)
	p0, err := l.Plan(context.Background(), fxReq(nil))
	if err != nil || p0.Records != 10 {
		t.Fatalf("plan of 10 lines: %+v, %v", p0, err)
	}
	write(12)
	if p1 := fxNotice(t, l, p0.Fingerprint); p1.Records != 12 {
		t.Fatalf("plan after the manifest grew: %d records; want 12", p1.Records)
	}
}

// TestRescan: without change notification, the rescan action and
// --rescan-interval make a change seen.
func TestRescan(t *testing.T) {
	t.Run("action", func(t *testing.T) {
		root := fxDataset(t, 20)
		l := fxLoader(t, root, fxCache(t, "", 0), nil) // no Run: nothing watches
		res, err := l.Rescan(context.Background(), "")
		if err != nil || len(res.Datasets) != 1 || res.Datasets[0].Changed || res.Datasets[0].Samples != 20 {
			t.Fatalf("rescan of an unchanged dataset = %+v, %v", res, err)
		}
		if err := os.WriteFile(filepath.Join(root, "c0", "zz.png"), fxImage(77, 20), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err = l.Rescan(context.Background(), "train")
		if err != nil {
			t.Fatal(err)
		}
		cur, _ := l.Dataset("train")
		want := service.DatasetListing{Dataset: "train", Samples: 21, Classes: 3, Fingerprint: cur.Fingerprint, Changed: true}
		if len(res.Datasets) != 1 || res.Datasets[0] != want {
			t.Fatalf("rescan after a file was added = %+v; want %+v", res, want)
		}
		if _, err := l.Rescan(context.Background(), "nope"); !errors.Is(err, service.ErrNotFound) {
			t.Fatalf("rescan of an unknown dataset = %v; want ErrNotFound", err)
		}
		// A root that cannot be listed keeps the listing: requests go on.
		if err := os.Rename(root, root+".moved"); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Rescan(context.Background(), "train"); !errors.Is(err, ErrDataset) || !errors.Is(err, service.ErrStale) {
			t.Fatalf("rescan of a vanished root = %v; want ErrDataset, FailedPrecondition", err)
		}
		if now, _ := l.Dataset("train"); now.Fingerprint != cur.Fingerprint {
			t.Fatal("a failed rescan replaced the listing")
		}
	})
	t.Run("interval", func(t *testing.T) {
		root := fxDataset(t, 20)
		l := fxLoader(t, root, fxCache(t, "", 0), func(o *Options) { o.RescanInterval = 200 * time.Millisecond })
		l.noNotify = true // as on NFS
		fxRun(t, l)
		p0, err := l.Plan(context.Background(), fxReq(nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "c2", "zz.png"), fxImage(78, 20), 0o644); err != nil {
			t.Fatal(err)
		}
		if p1 := fxNotice(t, l, p0.Fingerprint); p1.Records != 21 {
			t.Fatalf("plan after a rescan: %d records; want 21", p1.Records)
		}
	})
}

// TestChangeKeepsDecodability: what the loader learned of unchanged files
// (here: one undecodable) carries over to the new listing, at its new
// index.
func TestChangeKeepsDecodability(t *testing.T) {
	root := fxDataset(t, 12)
	probe := fxLoader(t, root, fxCache(t, "", 0), nil)
	path := fxCorrupt(t, root, probe, 6)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	if _, err := fxCollect(context.Background(), l, fxReq(nil)); err != nil {
		t.Fatal(err)
	}
	// A file sorted first moves every index by one.
	if err := os.WriteFile(filepath.Join(root, "c0", "aaa.png"), fxImage(5, 20), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Rescan(context.Background(), "train"); err != nil {
		t.Fatal(err)
	}
	errs, _ := l.DatasetErrors(context.Background(), "train")
	cur, _ := l.Dataset("train")
	if len(errs) != 1 || errs[0].Path != path || cur.Samples[errs[0].Index].Path != path {
		t.Fatalf("dataset errors after the change = %+v; want %s at its new index", errs, path)
	}
	if d := l.sets["train"].current(); d.files[errs[0].Index] != fileBad {
		t.Fatal("the new listing forgot the undecodable file")
	}
}
