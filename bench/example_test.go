package bench_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/loaderd/loaderd/bench"
)

// A report prints as tables with the ratios to the best peer and to
// loopback TCP; Run fills one from measurements.
func ExampleReport_WriteTable() {
	r := &bench.Report{
		Machine: bench.Machine{CPU: "Example CPU", Cores: 2, GOMAXPROCS: 2, GoVersion: "go1.26", OS: "linux", Arch: "amd64", Decoder: "go"},
		Dataset: bench.DatasetInfo{Source: "generated", Images: 256, SourceImages: 256, Classes: 4, Bytes: 256 * 30000,
			BytesPerPixel: 0.21, Pipeline: "random_resized_crop(size=224,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5)", RowBytes: 150528},
		Repeat:     3,
		Cold:       []bench.Point{{Workers: 1, ImagesPerSec: 450, Min: 440, Max: 460, CPUCores: 0.98}},
		Precompute: []bench.Point{{Workers: 1, Epochs: 4, ImagesPerSec: 900, Min: 880, Max: 910, CPUCores: 1.02}},
		Warm:       []bench.Point{{Clients: 1, ImagesPerSec: 9000, GBPerSec: 1.35, Min: 8800, Max: 9100}},
		Limits: bench.Limits{
			Memcpy:   bench.Rate{Streams: 1, GBPerSec: 16, Min: 15, Max: 17, SamplesPerSec: 106293},
			Loopback: []bench.Rate{{Streams: 1, GBPerSec: 2.7, Min: 2.5, Max: 2.9, SamplesPerSec: 17937}},
		},
		Peers: []bench.PeerResult{{Name: "tfdata", Label: "tf.data", Python: "/venv/bin/python",
			Versions: map[string]string{"tensorflow": "2.21.0"},
			Cold:     []bench.Point{{Workers: 1, Variant: "crop", Epochs: 2, ImagesPerSec: 375, Min: 370, Max: 380, CPUCores: 1.1}}}},
	}
	if err := r.WriteTable(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// loaderd bench: Example CPU, 2 cores, GOMAXPROCS 2, go1.26 linux/amd64, decoder go
	// dataset: generated (256 of 256 images, 4 classes, 30.0 KB/image, 0.21 bytes/px)
	// pipeline: random_resized_crop(size=224,scale=0.08:1,ratio=0.75:1.3333)|hflip(p=0.5) (150528 bytes/sample); medians of 3 runs after a warm-up, [min–max]
	//
	// COLD: decode + augment, files in memory
	//   workers  images/s  [min–max]  cores          best peer  peer images/s  loaderd/peer  per CPU-second
	//         1       450  [440–460]   0.98  tfdata crop (W=1)            375          1.20            1.35
	//
	// PRECOMPUTE: augmented samples into the cache
	//   epochs  images/s  [min–max]  workers  cores  best peer per epoch  peer images/s  loaderd/peer  per CPU-second
	//        4       900  [880–910]        1   1.02    tfdata crop (W=1)            375          2.40            2.59
	//
	// WARM: cached epoch, Flight DoGet on loopback, client k of c reads rank k of world size c
	//   clients  images/s    [min–max]  GB/s      served/loopback
	//         1      9000  [8800–9100]  1.35  0.50 (1-stream TCP)
	//
	// LIMITS
	//                 streams   GB/s      [min–max]  samples/s
	//         memcpy        1  16.00  [15.00–17.00]     106293
	//   loopback TCP        1   2.70    [2.50–2.90]      17937
	//
	// PEERS: the same files, the same work (decode, RandomResizedCrop(224), flip, uint8 HWC batches)
	//     peer  variant  workers  epochs  images/s  [min–max]  cores  images/CPU-s
	//   tfdata     crop        1       2       375  [370–380]   1.10           341
	// peer tfdata: tf.data; tensorflow 2.21.0 (/venv/bin/python)
	// workers: loaderd goroutines; DALI num_threads; tf.data num_parallel_calls and thread pool; DataLoader num_workers (0: in-process, counted as 1)
	// warm/best peer: 24.0× (best warm images/s over the best peer's best cold images/s)
	// warm/cold: 20.0× (best warm images/s over best cold images/s)
}

// GenerateDataset writes a deterministic ImageFolder of JPEGs.
func ExampleGenerateDataset() {
	dir, err := os.MkdirTemp("", "bench-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	if err := bench.GenerateDataset(dir, 8, 2, 1); err != nil {
		fmt.Println(err)
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*", "*.jpg"))
	classes, _ := filepath.Glob(filepath.Join(dir, "*"))
	fmt.Println(len(files), "images in", len(classes), "classes")
	// Output: 8 images in 2 classes
}
