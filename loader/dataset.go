package loader

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/loaderd/loaderd/service"
)

// ErrDataset reports a dataset that cannot be listed: a missing root, an
// empty tree, a malformed manifest.
var ErrDataset = errors.New("loader: bad dataset")

// imageExts are the file extensions a dataset sample may have (SPEC §1):
// every extension of a format augment decodes, compared case-insensitively.
var imageExts = map[string]bool{
	".jpg": true, ".jpeg": true, ".png": true, ".webp": true, ".gif": true, ".bmp": true,
}

// Layout is how an ImageFolder dataset lies on disk, as messages write it.
const Layout = "ROOT/<class>/<image>"

// ImageExtensions returns the extensions that make a file a sample (SPEC
// §1), sorted, for messages and help.
func ImageExtensions() []string {
	exts := make([]string, 0, len(imageExts))
	for e := range imageExts {
		exts = append(exts, e)
	}
	slices.Sort(exts)
	return exts
}

// whyEmpty says why the listing d found no sample and what to do: the
// expected layout, the extensions that count, and a hint when the root
// holds images itself (a flat folder, a common layout ImageFolder skips).
func whyEmpty(d *Dataset, isDir bool) string {
	exts := strings.Join(ImageExtensions(), " ")
	if !isDir {
		return "the manifest lists none; want path<TAB>label lines"
	}
	flat, other := 0, 0
	if entries, err := os.ReadDir(d.Root); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
				continue
			}
			if imageExts[strings.ToLower(filepath.Ext(e.Name()))] {
				flat++
			} else {
				other++
			}
		}
	}
	skipped := 0
	for _, n := range d.Skipped {
		skipped += n
	}
	switch {
	case flat > 0:
		return fmt.Sprintf("its %d images lie in the root itself; an ImageFolder wants %s (one class: move them into e.g. ROOT/all/)", flat, Layout)
	case len(d.Classes) == 0 && other == 0:
		return fmt.Sprintf("the directory is empty; want %s, images ending in %s", Layout, exts)
	case len(d.Classes) == 0:
		return fmt.Sprintf("no class directories, only %d other files; want %s, images ending in %s", other, Layout, exts)
	case skipped > 0:
		return fmt.Sprintf("its %d class directories hold %d files, none ending in %s (found %s)", len(d.Classes), skipped, exts, skippedList(d.Skipped))
	}
	return fmt.Sprintf("its %d class directories hold no files; want %s, images ending in %s", len(d.Classes), Layout, exts)
}

// skippedList writes counts by extension, most common first: ".txt 3, .tif 2".
func skippedList(m map[string]int) string {
	exts := make([]string, 0, len(m))
	for e := range m {
		exts = append(exts, e)
	}
	slices.SortFunc(exts, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, min(len(exts), 4))
	for i, e := range exts {
		if i == 4 {
			parts = append(parts, "…")
			break
		}
		name := e
		if name == "" {
			name = "no extension"
		}
		parts = append(parts, fmt.Sprintf("%s %d", name, m[e]))
	}
	return strings.Join(parts, ", ")
}

// A Sample is one file of a dataset: what the listing holds, never pixels.
type Sample struct {
	Path    string // slash-separated, relative to the dataset root
	Label   int64
	Size    int64 // bytes, at listing time
	ModTime int64 // nanoseconds since the epoch, at listing time
}

// A Dataset is the listing of an ImageFolder tree or a manifest (SPEC §1).
// Sample i has index i. A Dataset is immutable and safe for concurrent use.
type Dataset struct {
	Name        string
	Root        string // absolute directory sample paths are relative to
	Classes     []string
	Samples     []Sample
	Fingerprint string // hex SHA-256 over the classes and every sample's path, size and mtime
	// Skipped counts the regular files under the class directories that
	// are not samples because of their extension, by lower-case extension
	// ("" for none); dot-files are not counted. Nil for a manifest.
	Skipped map[string]int

	// dirs are the directories whose entries make the listing: an
	// ImageFolder's root and every directory under its classes, a
	// manifest's directory and those of its samples. A change in one of
	// them may change the listing (watch.go watches them).
	dirs []string

	// unlisted are a manifest's entries whose files could not be listed,
	// by index (ManifestError); their Samples hold only path and label.
	unlisted map[int]service.SampleError

	// fault, in tests, is called before each attempt to read a sample's
	// file; an error it returns is that attempt's error (read.go).
	fault func(path string) error
}

// OpenDataset lists the dataset at path: a directory is an ImageFolder
// root, a regular file a manifest of `path<TAB>label` lines.
func OpenDataset(name, path string) (*Dataset, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDataset, path, err)
	}
	st, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist; want an ImageFolder root (%s) or a manifest file", ErrDataset, path, Layout)
	} else if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataset, err)
	}
	var d *Dataset
	if st.IsDir() {
		d, err = listImageFolder(abs)
	} else {
		d, err = readManifest(abs)
	}
	if err != nil {
		return nil, err
	}
	if len(d.Samples) == 0 {
		return nil, fmt.Errorf("%w: %s: no samples: %s", ErrDataset, path, whyEmpty(d, st.IsDir()))
	}
	d.Name = name
	d.Fingerprint = fingerprint(d)
	if len(d.unlisted) > 0 {
		e := &ManifestError{Manifest: path, Listing: d}
		for _, i := range slices.Sorted(maps.Keys(d.unlisted)) {
			e.Entries = append(e.Entries, d.unlisted[i])
		}
		return nil, e
	}
	return d, nil
}

// Len returns the number of samples.
func (d *Dataset) Len() int { return len(d.Samples) }

// File returns the path of sample i on disk.
func (d *Dataset) File(i int) string {
	return filepath.Join(d.Root, filepath.FromSlash(d.Samples[i].Path))
}

// listImageFolder lists ROOT/<class>/<file...>. Classes are the visible
// sub-directories sorted by bytes; files are found at any depth under a
// class directory. Symlinks are followed only when they resolve inside root.
func listImageFolder(root string) (*Dataset, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataset, err)
	}
	d := &Dataset{Root: root, dirs: []string{root}}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		full := filepath.Join(root, e.Name())
		st, err := statInside(root, full)
		if err != nil || !st.IsDir() {
			continue
		}
		d.Classes = append(d.Classes, e.Name())
	}
	slices.Sort(d.Classes) // os.ReadDir sorts too; the SPEC fixes byte order, so say it here
	for label, class := range d.Classes {
		var files []Sample
		err := walkInside(root, filepath.Join(root, class), func(full string, st fs.FileInfo) {
			if ext := strings.ToLower(filepath.Ext(full)); !imageExts[ext] {
				if d.Skipped == nil {
					d.Skipped = map[string]int{}
				}
				d.Skipped[ext]++
				return
			}
			rel, _ := filepath.Rel(root, full)
			files = append(files, Sample{
				Path:    filepath.ToSlash(rel),
				Label:   int64(label),
				Size:    st.Size(),
				ModTime: st.ModTime().UnixNano(),
			})
		}, &d.dirs)
		if err != nil {
			return nil, err
		}
		d.Samples = append(d.Samples, files...)
	}
	// Sorted by the relative slash path as a whole, by bytes (SPEC §1).
	slices.SortFunc(d.Samples, func(a, b Sample) int { return strings.Compare(a.Path, b.Path) })
	return d, nil
}

// walkInside calls fn for every regular file under dir, and appends each
// directory it walks to dirs, skipping dot-files and dot-directories and following symlinks only when their target lies
// inside root (a link cycle is cut by the visited set).
func walkInside(root, dir string, fn func(string, fs.FileInfo), dirs *[]string) error {
	visited := map[string]bool{}
	var walk func(dir string) error
	walk = func(dir string) error {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil || visited[real] {
			return nil
		}
		visited[real] = true
		*dirs = append(*dirs, dir)
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDataset, err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue
			}
			full := filepath.Join(dir, e.Name())
			st, err := statInside(root, full)
			if err != nil {
				continue
			}
			switch {
			case st.IsDir():
				if err := walk(full); err != nil {
					return err
				}
			case st.Mode().IsRegular():
				fn(full, st)
			}
		}
		return nil
	}
	return walk(dir)
}

// statInside stats full, following a symlink only when its target is
// inside root; a link pointing out of root is an error.
func statInside(root, full string) (fs.FileInfo, error) {
	lst, err := os.Lstat(full)
	if err != nil {
		return nil, err
	}
	if lst.Mode()&fs.ModeSymlink == 0 {
		return lst, nil
	}
	target, err := filepath.EvalSymlinks(full)
	if err != nil {
		return nil, err
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(realRoot, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("%w: %s links out of the dataset root", ErrDataset, full)
	}
	return os.Stat(target)
}

// readManifest reads `path<TAB>label` lines; paths are relative to the
// manifest's directory and may not leave it. Blank lines and lines starting
// with # are skipped. Classes are the labels' decimal names, 0..max.
func readManifest(file string) (*Dataset, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDataset, err)
	}
	defer f.Close()
	d := &Dataset{Root: filepath.Dir(file), dirs: []string{filepath.Dir(file)}}
	seen := map[string]bool{d.Root: true}
	maxLabel := int64(-1)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		p, l, ok := strings.Cut(text, "\t")
		if !ok {
			return nil, fmt.Errorf("%w: %s:%d: want path<TAB>label", ErrDataset, file, line)
		}
		label, err := strconv.ParseInt(strings.TrimSpace(l), 10, 64)
		if err != nil || label < 0 {
			return nil, fmt.Errorf("%w: %s:%d: label %q is not a non-negative integer", ErrDataset, file, line, l)
		}
		rel := path.Clean(filepath.ToSlash(p))
		if path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
			return nil, fmt.Errorf("%w: %s:%d: path %q leaves the manifest's directory", ErrDataset, file, line, p)
		}
		full := filepath.Join(d.Root, filepath.FromSlash(rel))
		if dir := filepath.Dir(full); !seen[dir] {
			seen[dir] = true
			d.dirs = append(d.dirs, dir)
		}
		maxLabel = max(maxLabel, label)
		st, err := statInside(d.Root, full)
		if err == nil && !st.Mode().IsRegular() {
			err = errors.New("not a regular file")
		}
		if err != nil {
			// Listed as an entry that cannot be read (OpenDataset then
			// refuses the dataset; Scan reports the entry), so that every
			// such entry is found in one pass, and indices stay the lines'.
			if d.unlisted == nil {
				d.unlisted = map[int]service.SampleError{}
			}
			i := len(d.Samples)
			d.unlisted[i] = service.SampleError{Index: int64(i), Path: rel, Kind: service.SampleUnreadable,
				Reason: fmt.Sprintf("%s:%d: %s", filepath.Base(file), line, entryReason(err))}
			d.Samples = append(d.Samples, Sample{Path: rel, Label: label, Size: -1})
			continue
		}
		d.Samples = append(d.Samples, Sample{Path: rel, Label: label, Size: st.Size(), ModTime: st.ModTime().UnixNano()})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDataset, file, err)
	}
	for i := int64(0); i <= maxLabel; i++ {
		d.Classes = append(d.Classes, strconv.FormatInt(i, 10))
	}
	return d, nil
}

// entryReason words why a manifest entry's file cannot be listed, without
// the path (the entry names it).
func entryReason(err error) string {
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "no such file"
	case errors.As(err, &pe):
		return pe.Err.Error()
	case errors.Is(err, ErrDataset):
		return "links out of the manifest's directory"
	}
	return err.Error()
}

// A ManifestError reports the entries of a manifest whose files cannot be
// listed: missing, not regular files, unreadable, or linking out of the
// manifest's directory. It wraps ErrDataset: such a dataset is not served.
// Listing is the manifest's listing with those entries in place (each a
// sample that Scan reports as unreadable without reading it), for a scan
// that lists every problem at once.
type ManifestError struct {
	Manifest string
	Entries  []service.SampleError // by index; Kind unreadable, Reason "FILE:LINE: why"
	Listing  *Dataset
}

func (e *ManifestError) Error() string {
	first := e.Entries[0]
	msg := fmt.Sprintf("%v: %s: %s", ErrDataset, first.Path, first.Reason)
	switch n := len(e.Entries) - 1; n {
	case 0:
	case 1:
		msg += "; 1 more entry names a file that cannot be read"
	default:
		msg += fmt.Sprintf("; %d more entries name files that cannot be read", n)
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrDataset) hold.
func (e *ManifestError) Unwrap() error { return ErrDataset }

// fingerprint hashes the class list and every sample's (path, label, size,
// mtime), length-prefixed so no two listings collide by concatenation.
func fingerprint(d *Dataset) string {
	h := sha256.New()
	var buf [8]byte
	putString := func(s string) {
		binary.LittleEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	putInt := func(v int64) {
		binary.LittleEndian.PutUint64(buf[:], uint64(v))
		h.Write(buf[:])
	}
	putString("loaderd-dataset-v1")
	putInt(int64(len(d.Classes)))
	for _, c := range d.Classes {
		putString(c)
	}
	putInt(int64(len(d.Samples)))
	for _, s := range d.Samples {
		putString(s.Path)
		putInt(s.Label)
		putInt(s.Size)
		putInt(s.ModTime)
	}
	return hex.EncodeToString(h.Sum(nil))
}
