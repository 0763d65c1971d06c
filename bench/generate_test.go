package bench

import (
	"bytes"
	"errors"
	"image/jpeg"
	"os"
	"path/filepath"
	"testing"
)

func TestGenerateDataset(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if err := GenerateDataset(dir, 6, 3, 7); err != nil {
			t.Fatalf("GenerateDataset: %v", err)
		}
	}
	for i := range 6 {
		rel := filepath.Join(className(i%3), "img_0000"+string(rune('0'+i))+".jpg")
		x, err := os.ReadFile(filepath.Join(a, rel))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs with the same seed", rel)
		}
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(x))
		if err != nil || cfg.Width < 360 || cfg.Width > 440 || cfg.Height < 310 || cfg.Height > 390 {
			t.Errorf("%s: config %+v, %v; want about 400×350", rel, cfg, err)
		}
	}
}

func TestGenerateDatasetRejects(t *testing.T) {
	tests := []struct {
		name       string
		n, classes int
	}{
		{name: "no images", n: 0, classes: 1},
		{name: "no classes", n: 4, classes: 0},
		{name: "more classes than images", n: 2, classes: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := GenerateDataset(t.TempDir(), tc.n, tc.classes, 1); !errors.Is(err, ErrOptions) {
				t.Fatalf("GenerateDataset(n=%d, classes=%d) = %v, want ErrOptions", tc.n, tc.classes, err)
			}
		})
	}
}
