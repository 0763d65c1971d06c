package bench

import (
	"slices"
	"time"
)

// summary is the median, minimum and maximum of repeated measurements.
type summary struct {
	Median, Min, Max float64
}

func summarize(runs []float64) summary {
	if len(runs) == 0 {
		return summary{}
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// rate returns n per second over d, or 0 for a zero duration.
func rate(n float64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return n / d.Seconds()
}
