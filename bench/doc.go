// Package bench is the harness behind `loaderd bench`: in one run over one
// dataset it measures how many images per second this machine can feed a
// trainer cold (decode + augment), while precomputing epochs into the cache
// (one epoch and K fused epochs), and warm (a cached epoch served over Arrow
// Flight to 1, 2, 4 local clients), next to the machine's own limits
// (memcpy, loopback TCP) and, when Python and torch are installed, next to
// PyTorch's DataLoader on the same images.
//
// Run returns a Report, which prints as a table with ratios (WriteTable),
// serialises every figure with the machine description (WriteJSON) and
// draws images/s against workers and clients (WritePlot). Every figure is
// the median of Options.Repeat timed runs after an untimed warm-up, with
// the minimum and maximum kept as the noise.
//
// GenerateDataset writes a small deterministic ImageFolder of JPEGs, used
// when no dataset is given.
package bench
