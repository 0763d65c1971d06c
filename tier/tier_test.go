package tier_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loaderd/loaderd/shardcache"
	"github.com/loaderd/loaderd/tier"
	"github.com/loaderd/loaderd/tier/tiertest"
)

// fakeShard is a shard file of rows rows of rowBytes bytes laid out as a
// cache shard is: a header, the index and label columns, the images, a
// footer. Its bytes are random but fixed by seed.
func fakeShard(rows, rowBytes int, seed uint64) ([]byte, tier.Layout) {
	lay := tier.Layout{Rows: rows, RowBytes: rowBytes, IndexOffset: 64}
	lay.LabelOffset = lay.IndexOffset + 8*int64(rows)
	lay.ImageOffset = lay.LabelOffset + 8*int64(rows)
	lay.Size = lay.ImageOffset + int64(rows*rowBytes) + 32
	b := make([]byte, lay.Size)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	for p := range rows {
		binary.LittleEndian.PutUint64(b[lay.IndexOffset+8*int64(p):], uint64(1000*seed)+uint64(p))
		binary.LittleEndian.PutUint64(b[lay.LabelOffset+8*int64(p):], int64ToU(int64(p%7)-3))
	}
	return b, lay
}

func int64ToU(v int64) uint64 { return uint64(v) }

func rowOf(b []byte, lay tier.Layout, p int) tier.Row {
	off := lay.ImageOffset + int64(p*lay.RowBytes)
	return tier.Row{
		Row:   p,
		Index: binary.LittleEndian.Uint64(b[lay.IndexOffset+8*int64(p):]),
		Label: int64(binary.LittleEndian.Uint64(b[lay.LabelOffset+8*int64(p):])),
		Image: b[off : off+int64(lay.RowBytes)],
	}
}

// backends runs f against a directory tier and an S3 tier (rclone).
func backends(t *testing.T, f func(t *testing.T, url string, objects string)) {
	t.Run("file", func(t *testing.T) {
		dir := t.TempDir()
		f(t, "file://"+dir+"/tier", filepath.Join(dir, "tier"))
	})
	t.Run("s3", func(t *testing.T) {
		s3 := tiertest.StartS3(t)
		s3.Setenv(t)
		f(t, s3.URL("jobs/a"), filepath.Join(s3.Dir, s3.Bucket, "jobs", "a"))
	})
}

var key = shardcache.Key{Dataset: "d1", Pipeline: "p1", Seed: 7, Epoch: 3}

func TestRoundTrip(t *testing.T) {
	backends(t, func(t *testing.T, url, objects string) {
		ctx := context.Background()
		reg := prometheus.NewRegistry()
		st, err := tier.Open(ctx, url, &tier.Options{Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		ep := st.Epoch(key)
		// 130 rows of 147 KiB: 19 MB, a multipart upload on S3.
		data, lay := fakeShard(130, 150528, 1)
		if err := ep.PutShard(ctx, 4, data, lay); err != nil {
			t.Fatal(err)
		}
		// A second put of the same shard uploads nothing.
		before := counter(t, reg, "loaderd_tier_uploaded_bytes_total")
		if err := ep.PutShard(ctx, 4, data, lay); err != nil {
			t.Fatal(err)
		}
		if after := counter(t, reg, "loaderd_tier_uploaded_bytes_total"); after != before {
			t.Errorf("second PutShard uploaded %v bytes", after-before)
		}

		// A fresh handle (another node) finds it.
		st2, err := tier.Open(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		ep2 := st2.Epoch(key)
		if got, err := ep2.Complete(ctx); err != nil || len(got) != 1 || got[0] != 4 {
			t.Fatalf("Complete = %v, %v; want [4]", got, err)
		}
		var buf writerAt
		if n, err := ep2.ReadShard(ctx, 4, &buf); err != nil || n != lay.Size || !bytes.Equal(buf.b, data) {
			t.Fatalf("ReadShard = %d, %v; equal %v", n, err, bytes.Equal(buf.b, data))
		}
		want := []int{0, 1, 2, 50, 129, 77}
		rows, err := ep2.ReadRows(ctx, 4, want)
		if err != nil || len(rows) != len(want) {
			t.Fatalf("ReadRows = %d rows, %v", len(rows), err)
		}
		for _, r := range rows {
			checkRow(t, r, rowOf(data, lay, r.Row))
		}
		if _, err := ep2.ReadShard(ctx, 5, &buf); !errors.Is(err, tier.ErrMissing) {
			t.Errorf("ReadShard of an absent shard: %v; want ErrMissing", err)
		}

		// Parts: two nodes' rows of shard 9, which nobody completes.
		data9, lay9 := fakeShard(10, 1000, 9)
		var a, b []tier.Row
		for p := range 10 {
			if p%3 == 0 {
				a = append(a, rowOf(data9, lay9, p))
			} else if p != 5 {
				b = append(b, rowOf(data9, lay9, p))
			}
		}
		if err := ep.PutRows(ctx, 9, a, lay9); err != nil {
			t.Fatal(err)
		}
		if err := ep.PutRows(ctx, 9, b, lay9); err != nil {
			t.Fatal(err)
		}
		if err := ep2.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		complete, have, err := ep2.Available(ctx, 9)
		if err != nil || complete || len(have) != 9 || contains(have, 5) {
			t.Fatalf("Available(9) = %v, %v, %v; want rows 0-9 but 5", complete, have, err)
		}
		rows, err = ep2.ReadRows(ctx, 9, []int{9, 5, 3, 0, 1})
		if err != nil || len(rows) != 4 {
			t.Fatalf("ReadRows from parts = %d rows, %v; want 4", len(rows), err)
		}
		for _, r := range rows {
			checkRow(t, r, rowOf(data9, lay9, r.Row))
		}
	})
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func checkRow(t *testing.T, got, want tier.Row) {
	t.Helper()
	if got.Row != want.Row || got.Index != want.Index || got.Label != want.Label || !bytes.Equal(got.Image, want.Image) {
		t.Errorf("row %d: got index %d label %d, want %d %d (image equal %v)", want.Row, got.Index, got.Label, want.Index, want.Label, bytes.Equal(got.Image, want.Image))
	}
}

type writerAt struct{ b []byte }

func (w *writerAt) WriteAt(p []byte, off int64) (int, error) {
	if n := off + int64(len(p)); n > int64(len(w.b)) {
		w.b = append(w.b, make([]byte, n-int64(len(w.b)))...)
	}
	copy(w.b[off:], p)
	return len(p), nil
}

func counter(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestCorruptOnArrival: bytes changed in the store are never handed out.
func TestCorruptOnArrival(t *testing.T) {
	backends(t, func(t *testing.T, url, objects string) {
		ctx := context.Background()
		reg := prometheus.NewRegistry()
		st, err := tier.Open(ctx, url, &tier.Options{Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		ep := st.Epoch(key)
		data, lay := fakeShard(8, 4096, 2)
		if err := ep.PutShard(ctx, 0, data, lay); err != nil {
			t.Fatal(err)
		}
		// Flip one byte of row 3's image in the stored object.
		matches, _ := filepath.Glob(filepath.Join(objects, key.Name(), "shard-000000.*.arrow"))
		if len(matches) != 1 {
			filepath.WalkDir(filepath.Dir(objects), func(p string, d fs.DirEntry, err error) error { t.Log(p); return nil })
			t.Fatalf("stored shard: %v", matches)
		}
		f, err := os.OpenFile(matches[0], os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		off := lay.ImageOffset + 3*int64(lay.RowBytes) + 17
		if _, err := f.WriteAt([]byte{data[off] ^ 0xff}, off); err != nil {
			t.Fatal(err)
		}
		f.Close()

		other, _ := tier.Open(ctx, url, nil)
		var buf writerAt
		if _, err := other.Epoch(key).ReadShard(ctx, 0, &buf); !errors.Is(err, tier.ErrCorrupt) {
			t.Errorf("ReadShard of a changed object: %v; want ErrCorrupt", err)
		}
		rows, err := ep.ReadRows(ctx, 0, []int{2, 3, 4})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 2 || rows[0].Row != 2 || rows[1].Row != 4 {
			t.Errorf("ReadRows handed out %d rows; want rows 2 and 4, not the changed 3", len(rows))
		}
		if c := counter(t, reg, "loaderd_tier_corrupt_total"); c != 1 {
			t.Errorf("loaderd_tier_corrupt_total = %v; want 1", c)
		}
	})
}

// TestUnfinishedUploadInvisible: a data object without its index (a
// process killed between the two), or an index whose data object's
// upload never completed, is not a shard.
func TestUnfinishedUploadInvisible(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		ctx := context.Background()
		dir := t.TempDir()
		st, err := tier.Open(ctx, "file://"+dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		data, lay := fakeShard(4, 100, 3)
		if err := st.Epoch(key).PutShard(ctx, 1, data, lay); err != nil {
			t.Fatal(err)
		}
		idx, _ := filepath.Glob(filepath.Join(dir, key.Name(), "shard-000001.*.idx"))
		if len(idx) != 1 {
			t.Fatal(idx)
		}
		os.Remove(idx[0])
		// A temporary file of an upload in progress is not listed either.
		os.WriteFile(filepath.Join(dir, key.Name(), ".shard-000002.00000000.arrow.tmp-1"), data, 0o644)
		ep := mustOpen(t, "file://"+dir).Epoch(key)
		if got, err := ep.Complete(ctx); err != nil || len(got) != 0 {
			t.Errorf("Complete = %v, %v; want none", got, err)
		}
	})
	t.Run("s3 multipart", func(t *testing.T) {
		ctx := context.Background()
		s3 := tiertest.StartS3(t)
		s3.Setenv(t)
		st := mustOpen(t, s3.URL("p"))
		ep := st.Epoch(key)
		data, lay := fakeShard(120, 150528, 4) // 18 MB: a multipart upload
		if err := ep.PutShard(ctx, 2, data, lay); err != nil {
			t.Fatal(err)
		}
		// Now a second shard whose data upload is left unfinished: its
		// multipart upload is started and one part sent, never completed;
		// then its index is written as if the upload had been.
		core, err := minio.NewCore(strings.TrimPrefix(s3.Endpoint, "http://"), &minio.Options{
			Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""), Region: "us-east-1",
		})
		if err != nil {
			t.Fatal(err)
		}
		var arrowName string
		for oi := range core.ListObjectsIter(ctx, s3.Bucket, minio.ListObjectsOptions{Prefix: "p/" + key.Name() + "/", Recursive: true}) {
			if strings.HasSuffix(oi.Key, ".arrow") {
				arrowName = oi.Key
			}
		}
		if arrowName == "" {
			t.Fatal("no shard object listed")
		}
		unfinished := strings.Replace(arrowName, "shard-000002", "shard-000003", 1)
		id, err := core.NewMultipartUpload(ctx, s3.Bucket, unfinished, minio.PutObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		part := data[:5<<20]
		if _, err := core.PutObjectPart(ctx, s3.Bucket, unfinished, id, 1, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{}); err != nil {
			t.Fatal(err)
		}
		idxName := strings.TrimSuffix(arrowName, ".arrow") + ".idx"
		rc, _, _, err := core.GetObject(ctx, s3.Bucket, idxName, minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var idx bytes.Buffer
		idx.ReadFrom(rc)
		rc.Close()
		if _, err := core.Client.PutObject(ctx, s3.Bucket, strings.Replace(idxName, "shard-000002", "shard-000003", 1), bytes.NewReader(idx.Bytes()), int64(idx.Len()), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		ep2 := mustOpen(t, s3.URL("p")).Epoch(key)
		if got, err := ep2.Complete(ctx); err != nil || len(got) != 1 || got[0] != 2 {
			t.Errorf("Complete = %v, %v; want [2]: shard 3's upload never completed", got, err)
		}
		var buf writerAt
		if _, err := ep2.ReadShard(ctx, 3, &buf); !errors.Is(err, tier.ErrMissing) {
			t.Errorf("ReadShard of an unfinished upload: %v; want ErrMissing", err)
		}
	})
}

func mustOpen(t *testing.T, url string) *tier.Store {
	t.Helper()
	st, err := tier.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{name: "no scheme", url: "/data/tier", want: "scheme"},
		{name: "unknown scheme", url: "gs://b/p", want: `scheme "gs"`},
		{name: "no bucket", url: "s3:///p", want: "names no bucket"},
		{name: "credentials in URL", url: "s3://AKID:hunter2-secret@bucket/p", want: "credentials in the URL are refused"},
		{name: "query", url: "s3://bucket/p?x=1", want: "no query"},
		{name: "relative file", url: "file://host/p", want: "file:///PATH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tier.Open(context.Background(), tc.url, nil)
			if !errors.Is(err, tier.ErrURL) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open(%q) = %v; want ErrURL containing %q", tc.url, err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error repeats the secret: %v", err)
			}
		})
	}
}

// TestCredentialsNeverShown: a wrong secret, a missing bucket and a good
// run leave the secret out of errors, logs and metrics.
func TestCredentialsNeverShown(t *testing.T) {
	s3 := tiertest.StartS3(t)
	s3.Setenv(t)
	ctx := context.Background()
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := tier.Open(ctx, s3.URL("x"), &tier.Options{Logger: logger, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	data, lay := fakeShard(4, 100, 5)
	if err := st.Epoch(key).PutShard(ctx, 0, data, lay); err != nil {
		t.Fatal(err)
	}
	var texts []string
	texts = append(texts, st.String(), logs.String())
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		texts = append(texts, mf.String())
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey+"-wrong")
	_, err = tier.Open(ctx, s3.URL("x"), nil)
	if err == nil {
		t.Fatal("Open with a wrong secret succeeded")
	}
	texts = append(texts, err.Error())
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	_, err = tier.Open(ctx, "s3://no-such-bucket/x", nil)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Open of a missing bucket = %v; want 'does not exist'", err)
	} else {
		texts = append(texts, err.Error())
	}
	for _, s := range texts {
		if strings.Contains(s, s3.SecretKey) {
			t.Errorf("the secret key shows in %q", s)
		}
	}
}

// TestDirObjectsReadableByOthers: a shared directory's objects are made
// 0666 less the umask, as a node run as another user must read what this
// one uploaded (os.CreateTemp's 0600 kept them to the writer alone).
func TestDirObjectsReadableByOthers(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	ctx := context.Background()
	dir := t.TempDir()
	st, err := tier.Open(ctx, "file://"+dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	data, lay := fakeShard(4, 100, 1)
	if err := st.Epoch(key).PutShard(ctx, 0, data, lay); err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v; want 0644 (0666 less the umask 022)", path, fi.Mode().Perm())
		}
		files++
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("walk: %v, %d files", err, files)
	}
}
