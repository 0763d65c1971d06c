package augment

import "math/rand/v2"

// splitmix64 is the finaliser of the SplitMix64 generator: a bijective mix
// of all 64 input bits.
func splitmix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	return x ^ (x >> 31)
}

// SampleRand returns the random stream of sample index in epoch epoch: a
// PCG generator seeded by splitmix64 mixes of (seed, epoch, index) alone, so
// the draws of a sample do not depend on which worker computes it or when.
func SampleRand(seed uint64, epoch int, index int64) *rand.Rand {
	h := splitmix64(seed ^ 0x73616d706c65) // domain "sample"
	h = splitmix64(h ^ uint64(int64(epoch)))
	h = splitmix64(h ^ uint64(index))
	return rand.New(rand.NewPCG(h, splitmix64(h^0xA5A5A5A5A5A5A5A5)))
}
