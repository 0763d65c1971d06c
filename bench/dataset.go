package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/loader"
)

// benchData is the dataset every phase runs over, its files in memory.
type benchData struct {
	Dir   string // ImageFolder root the loader and the peer read
	Set   *loader.Dataset
	Files [][]byte // file bytes of every sample, by index
	Info  DatasetInfo
}

// prepareData generates a dataset (o.Data empty) or opens o.Data; when it
// has more than o.MaxImages images or is a manifest, it lays out an
// ImageFolder under tmp with images spread evenly over the source, so the
// loader, the cold pipeline and the peer all read the same files.
func prepareData(ctx context.Context, o *Options, tmp string) (*benchData, error) {
	limit := o.MaxImages
	info := DatasetInfo{Source: o.Data}
	dir := o.Data
	if o.Data == "" {
		n := o.GenerateCount
		if limit > 0 {
			n = min(n, limit)
		}
		dir = filepath.Join(tmp, "generated")
		if err := GenerateDataset(dir, n, min(4, n), o.Seed+1); err != nil {
			return nil, err
		}
		info.Source = "generated"
	}
	src, err := loader.OpenDataset("bench", dir)
	if err != nil {
		return nil, fmt.Errorf("bench: dataset: %w", err)
	}
	info.SourceImages = src.Len()
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("bench: dataset: %w", err)
	}
	set := src
	if (limit > 0 && src.Len() > limit) || !st.IsDir() {
		n := src.Len()
		if limit > 0 {
			n = min(n, limit)
		}
		dir = filepath.Join(tmp, "subset")
		if err := writeSubset(ctx, src, dir, n); err != nil {
			return nil, err
		}
		if set, err = loader.OpenDataset("bench", dir); err != nil {
			return nil, fmt.Errorf("bench: dataset: %w", err)
		}
	}
	d := &benchData{Dir: dir, Set: set, Files: make([][]byte, set.Len())}
	var pixels int64
	for i := range d.Files {
		if d.Files[i], err = set.ReadFile(i); err != nil {
			return nil, fmt.Errorf("bench: dataset: %w", err)
		}
		info.Bytes += int64(len(d.Files[i]))
		if w, h, _, err := augment.DecodeConfig(d.Files[i]); err == nil {
			pixels += int64(w) * int64(h)
		}
	}
	info.Path, info.Images, info.Classes = dir, set.Len(), len(set.Classes)
	if pixels > 0 {
		info.BytesPerPixel = float64(info.Bytes) / float64(pixels)
		info.MeanPixels = float64(pixels) / float64(set.Len())
	}
	d.Info = info
	return d, nil
}

// writeSubset lays out n samples of src, spread evenly over its indices, as
// an ImageFolder at dir (hard links where possible, else copies).
func writeSubset(ctx context.Context, src *loader.Dataset, dir string, n int) error {
	for k := range n {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bench: subset: %w", err)
		}
		i := k * src.Len() / n
		s := src.Samples[i]
		class := fmt.Sprint(s.Label)
		if s.Label >= 0 && int(s.Label) < len(src.Classes) {
			class = src.Classes[s.Label]
		}
		class = strings.NewReplacer("/", "_", string(filepath.Separator), "_").Replace(class)
		if class == "" || strings.HasPrefix(class, ".") {
			class = "c" + class
		}
		name := strings.ReplaceAll(s.Path, "/", "_")
		dst := filepath.Join(dir, class, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("bench: subset: %w", err)
		}
		if err := os.Link(src.File(i), dst); err == nil {
			continue
		}
		if err := copyFile(dst, src.File(i)); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(dst, src string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("bench: subset: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("bench: subset: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("bench: subset: %w", cerr)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("bench: subset: %w", err)
	}
	return nil
}
