package bench

import (
	"context"
	"testing"
)

func TestLimits(t *testing.T) {
	ctx := context.Background()
	m, err := measureMemcpy(ctx, 128<<20, 2)
	if err != nil || m.GBPerSec <= 0 || len(m.Runs) != 2 || m.Min > m.GBPerSec || m.GBPerSec > m.Max {
		t.Fatalf("measureMemcpy = %+v, %v; want 2 positive runs around the median", m, err)
	}
	for _, streams := range []int{1, 2} {
		l, err := measureLoopback(ctx, streams, 8<<20, 2)
		if err != nil || l.GBPerSec <= 0 || l.Streams != streams || l.Bytes != int64(streams)*8<<20 {
			t.Fatalf("measureLoopback(%d) = %+v, %v", streams, l, err)
		}
	}
}

func TestLoopbackCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := measureLoopback(ctx, 2, 1<<30, 1); err == nil {
		t.Fatal("measureLoopback with a cancelled ctx: nil error")
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name string
		runs []float64
		want summary
	}{
		{name: "empty", runs: nil, want: summary{}},
		{name: "odd", runs: []float64{3, 1, 2}, want: summary{Median: 2, Min: 1, Max: 3}},
		{name: "even", runs: []float64{4, 1, 2, 3}, want: summary{Median: 2.5, Min: 1, Max: 4}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := summarize(tc.runs); got != tc.want {
				t.Fatalf("summarize(%v) = %+v, want %+v", tc.runs, got, tc.want)
			}
		})
	}
}
