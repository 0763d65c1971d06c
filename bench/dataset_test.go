package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareData(t *testing.T) {
	src := t.TempDir()
	if err := GenerateDataset(src, 10, 2, 3); err != nil {
		t.Fatal(err)
	}
	var manifest strings.Builder
	for i := range 10 {
		fmt.Fprintf(&manifest, "%s/img_%05d.jpg\t%d\n", className(i%2), i, i%2)
	}
	manifestPath := filepath.Join(src, "train.tsv")
	if err := os.WriteFile(manifestPath, []byte(manifest.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		data        string
		maxImages   int
		wantImages  int
		wantClasses int
		wantInTemp  bool // an ImageFolder laid out in the temp dir
	}{
		{name: "whole folder", data: src, maxImages: 20, wantImages: 10, wantClasses: 2},
		{name: "all images", data: src, maxImages: -1, wantImages: 10, wantClasses: 2},
		{name: "folder subset", data: src, maxImages: 4, wantImages: 4, wantClasses: 2, wantInTemp: true},
		{name: "manifest", data: manifestPath, maxImages: 20, wantImages: 10, wantClasses: 2, wantInTemp: true},
		{name: "generated", data: "", maxImages: 5, wantImages: 5, wantClasses: 4, wantInTemp: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			o := (&Options{Data: tc.data, MaxImages: tc.maxImages}).withDefaults()
			d, err := prepareData(context.Background(), &o, tmp)
			if err != nil {
				t.Fatalf("prepareData: %v", err)
			}
			if d.Info.Images != tc.wantImages || len(d.Files) != tc.wantImages || d.Set.Len() != tc.wantImages {
				t.Fatalf("prepareData: %d images (%d files), want %d", d.Info.Images, len(d.Files), tc.wantImages)
			}
			if got := strings.HasPrefix(d.Dir, tmp); got != tc.wantInTemp {
				t.Fatalf("dataset dir %s in temp dir: %v, want %v", d.Dir, got, tc.wantInTemp)
			}
			if d.Info.Classes != tc.wantClasses || d.Info.BytesPerPixel <= 0 || d.Info.MeanPixels < 360*310 {
				t.Fatalf("info %+v: want %d classes and real pixel figures", d.Info, tc.wantClasses)
			}
			for i, f := range d.Files {
				if want, err := os.ReadFile(d.Set.File(i)); err != nil || string(want) != string(f) {
					t.Fatalf("file %d in memory differs from %s (%v)", i, d.Set.File(i), err)
				}
			}
		})
	}
}
