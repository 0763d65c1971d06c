package loader

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loaderd/loaderd/service"
)

func writeFile(t *testing.T, path string, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestImageFolderListing(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{
		"dog/b.JPG", "dog/a.png", "cat/z.jpeg", "cat/sub/y.jpg", "a-b/x.png",
		"dog/notes.txt", "dog/.hidden.jpg", ".trash/q.jpg", "cat/.dot/w.jpg",
		"dog/c.webp", "dog/d.GIF", "dog/e.bmp", "cat/f.tiff", "cat/g.TIF", "cat/Makefile",
	} {
		writeFile(t, filepath.Join(root, p), p)
	}
	writeFile(t, filepath.Join(root, "README.jpg"), "a file at the root is not a sample")
	outside := t.TempDir()
	writeFile(t, filepath.Join(outside, "secret.jpg"), "outside")
	if err := os.Symlink(filepath.Join(outside, "secret.jpg"), filepath.Join(root, "dog", "link.jpg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "dog", "a.png"), filepath.Join(root, "cat", "inside.png")); err != nil {
		t.Fatal(err)
	}

	d, err := OpenDataset("train", root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a-b", "cat", "dog"}; !slices.Equal(d.Classes, want) {
		t.Errorf("classes = %v; want %v", d.Classes, want)
	}
	var paths []string
	var labels []int64
	for _, s := range d.Samples {
		paths = append(paths, s.Path)
		labels = append(labels, s.Label)
	}
	wantPaths := []string{"a-b/x.png", "cat/inside.png", "cat/sub/y.jpg", "cat/z.jpeg", "dog/a.png", "dog/b.JPG",
		"dog/c.webp", "dog/d.GIF", "dog/e.bmp"}
	if !slices.Equal(paths, wantPaths) {
		t.Errorf("paths = %v; want %v", paths, wantPaths)
	}
	if want := []int64{0, 1, 1, 1, 2, 2, 2, 2, 2}; !slices.Equal(labels, want) {
		t.Errorf("labels = %v; want %v", labels, want)
	}
	if b, err := d.ReadFile(5); err != nil || string(b) != "dog/b.JPG" {
		t.Errorf("ReadFile(5) = %q, %v", b, err)
	}
	if want := map[string]int{".txt": 1, ".tiff": 1, ".tif": 1, "": 1}; !maps.Equal(d.Skipped, want) {
		t.Errorf("Skipped = %v; want %v", d.Skipped, want)
	}
}

func TestFingerprintChanges(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "a", "1.png"), "one")
	writeFile(t, filepath.Join(root, "b", "2.png"), "two")
	fp := func() string {
		d, err := OpenDataset("x", root)
		if err != nil {
			t.Fatal(err)
		}
		return d.Fingerprint
	}
	base := fp()
	if fp() != base {
		t.Fatal("fingerprint not stable")
	}
	steps := []struct {
		name string
		do   func()
	}{
		{name: "added", do: func() { writeFile(t, filepath.Join(root, "b", "3.png"), "three") }},
		{name: "modified", do: func() { writeFile(t, filepath.Join(root, "a", "1.png"), "ONE!") }},
		{name: "touched", do: func() {
			later := time.Now().Add(time.Hour)
			os.Chtimes(filepath.Join(root, "a", "1.png"), later, later)
		}},
		{name: "removed", do: func() { os.Remove(filepath.Join(root, "b", "3.png")) }},
		{name: "class renamed", do: func() { os.Rename(filepath.Join(root, "b"), filepath.Join(root, "c")) }},
	}
	prev := base
	for _, s := range steps {
		s.do()
		if got := fp(); got == prev {
			t.Errorf("%s: fingerprint unchanged", s.name)
		} else {
			prev = got
		}
	}
}

func TestManifest(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "img", "x.png"), "x")
	writeFile(t, filepath.Join(dir, "y.jpg"), "y")
	writeFile(t, filepath.Join(dir, "list.tsv"), "# comment\nimg/x.png\t3\n\ny.jpg\t0\n")
	d, err := OpenDataset("m", filepath.Join(dir, "list.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Len() != 2 || d.Samples[0].Path != "img/x.png" || d.Samples[0].Label != 3 || d.Samples[1].Label != 0 {
		t.Errorf("samples = %+v", d.Samples)
	}
	if len(d.Classes) != 4 {
		t.Errorf("classes = %v; want 0..3", d.Classes)
	}
	bad := []struct{ name, body string }{
		{name: "no tab", body: "img/x.png 3\n"},
		{name: "bad label", body: "img/x.png\tcat\n"},
		{name: "negative label", body: "img/x.png\t-1\n"},
		{name: "escapes", body: "../x.png\t1\n"},
		{name: "absolute", body: "/etc/passwd\t1\n"},
		{name: "missing", body: "nope.png\t1\n"},
		{name: "empty", body: "# nothing\n"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".tsv")
			writeFile(t, p, tc.body)
			if _, err := OpenDataset("m", p); !errors.Is(err, ErrDataset) {
				t.Errorf("OpenDataset = %v; want ErrDataset", err)
			}
		})
	}
}

// TestManifestMissingFiles: entries whose files cannot be listed (missing,
// a directory, a link out of the manifest's directory) are all found in
// one pass: a ManifestError (ErrDataset) names the first and counts the
// others, and its Listing keeps the lines' indices, so that Scan reports
// each such entry as unreadable, with its line, beside the other samples.
func TestManifestMissingFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.png"), "not a png")
	writeFile(t, filepath.Join(dir, "sub", "x"), "x")
	if err := os.Symlink("/etc/hostname", filepath.Join(dir, "out.jpg")); err != nil {
		t.Fatal(err)
	}
	manifest := filepath.Join(dir, "list.tsv")
	writeFile(t, manifest, "ok.png\t0\ngone.jpg\t1\nsub\t0\nout.jpg\t2\n")
	_, err := OpenDataset("m", manifest)
	var me *ManifestError
	if !errors.As(err, &me) || !errors.Is(err, ErrDataset) {
		t.Fatalf("OpenDataset = %v; want a ManifestError", err)
	}
	if !strings.Contains(err.Error(), "gone.jpg: list.tsv:2: no such file; 2 more entries name files that cannot be read") {
		t.Errorf("message %q", err)
	}
	want := []struct {
		index  int64
		reason string
	}{{1, "list.tsv:2: no such file"}, {2, "list.tsv:3: not a regular file"}, {3, "list.tsv:4: links out of the manifest's directory"}}
	if len(me.Entries) != len(want) {
		t.Fatalf("entries %+v", me.Entries)
	}
	for i, w := range want {
		if e := me.Entries[i]; e.Index != w.index || e.Reason != w.reason || e.Kind != service.SampleUnreadable {
			t.Errorf("entry %d = %+v; want index %d, %q", i, e, w.index, w.reason)
		}
	}
	bad, err := Scan(context.Background(), me.Listing, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 4 || bad[0].Index != 0 || bad[0].Kind != service.SampleUndecodable || bad[1] != me.Entries[0] || bad[3] != me.Entries[2] {
		t.Errorf("Scan of the listing = %+v; want ok.png undecodable, then the three entries", bad)
	}
}

// TestEmptyOrMissing: a dataset without samples is ErrDataset, and the
// message says what was found, the layout wanted and the extensions that
// count, with a hint for a root that holds its images itself.
func TestEmptyOrMissing(t *testing.T) {
	exts := strings.Join(ImageExtensions(), " ")
	tests := []struct {
		name  string
		files []string // made under the root, relative
		want  []string // in the message
	}{
		{name: "missing", want: []string{"does not exist", Layout, "manifest"}},
		{name: "empty", files: []string{}, want: []string{"the directory is empty", Layout, exts}},
		{name: "flat images", files: []string{"a.jpg", "b.JPEG", "c.png", "notes.txt"},
			want: []string{"its 3 images lie in the root itself", Layout, "ROOT/all/"}},
		{name: "only other files", files: []string{"readme.md", "data.csv"},
			want: []string{"no class directories, only 2 other files", Layout, exts}},
		{name: "classes of non-images", files: []string{"cat/1.tif", "cat/2.tif", "dog/x.txt", "dog/README"},
			want: []string{"its 2 class directories hold 4 files, none ending in " + exts, "found .tif 2, no extension 1, .txt 1"}},
		{name: "empty classes", files: []string{"cat/", "dog/"}, want: []string{"its 2 class directories hold no files", Layout}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			if tc.files != nil {
				if err := os.MkdirAll(root, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tc.files {
				p := filepath.Join(root, f)
				if strings.HasSuffix(f, "/") {
					if err := os.MkdirAll(p, 0o755); err != nil {
						t.Fatal(err)
					}
					continue
				}
				writeFile(t, p, "x")
			}
			_, err := OpenDataset("e", root)
			if !errors.Is(err, ErrDataset) {
				t.Fatalf("OpenDataset = %v; want ErrDataset", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}
