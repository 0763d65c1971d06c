package augment_test

import (
	"bytes"
	"fmt"
	"image"
	"image/png"

	"github.com/loaderd/loaderd/augment"
)

func Example() {
	p, err := augment.ParsePipeline("imagenet-train", nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(p)
	fmt.Println(p.Shape(), p.DimNames(), p.RowBytes(), p.Random())

	// A 320×240 PNG, augmented as sample 7 of epoch 3 with seed 42.
	img := image.NewGray(image.Rect(0, 0, 320, 240))
	for i := range img.Pix {
		img.Pix[i] = uint8(i % 251)
	}
	var file bytes.Buffer
	if err := png.Encode(&file, img); err != nil {
		panic(err)
	}
	row := make([]byte, p.RowBytes())
	if err := p.Apply(row, file.Bytes(), augment.SampleRand(42, 3, 7)); err != nil {
		panic(err)
	}
	again := make([]byte, p.RowBytes())
	_ = p.Apply(again, file.Bytes(), augment.SampleRand(42, 3, 7))
	fmt.Println("reproducible:", bytes.Equal(row, again))

	err = p.Apply(row, []byte("not an image"), augment.SampleRand(42, 3, 8))
	fmt.Println(err)
	// Output:
	// random_resized_crop(size=224,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)
	// [224 224 3] [H W C] 150528 true
	// reproducible: true
	// augment: cannot decode image: unknown format
}

func ExampleParsePipeline() {
	p, err := augment.ParsePipeline("resize(size=256) | center_crop(size=224) | normalize()", nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(p)
	fmt.Println(p.Shape(), p.DimNames(), p.Float32(), p.RowBytes())
	_, err = augment.ParsePipeline("resize(size=256)", nil)
	fmt.Println(err)
	// Output:
	// resize(size=256)|center_crop(size=224)|normalize(mean=0.485,0.456,0.406,std=0.229,0.224,0.225)
	// [3 224 224] [C H W] true 602112
	// augment: invalid pipeline: output size depends on the image; end with random_resized_crop, center_crop or resize(size=H,W)
}
