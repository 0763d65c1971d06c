package loader

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/service"
)

// TestCloseDuringStream closes the loader while a cold stream runs: the
// stream ends with ErrUnavailable instead of hanging.
func TestCloseDuringStream(t *testing.T) {
	root := fxDataset(t, 60)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	sent := 0
	err := l.Stream(context.Background(), fxReq(func(r *service.Request) { r.BatchSize = 3 }), func(b *service.Batch) error {
		b.Release()
		if sent++; sent == 2 {
			l.Close()
		}
		return nil
	})
	if !errors.Is(err, service.ErrUnavailable) {
		t.Fatalf("stream across Close = %v after %d batches, want ErrUnavailable", err, sent)
	}
}

// TestCloseUnregistersMetrics: a Loader's collectors leave the Registerer
// with Close, so a new Loader can register its own.
func TestCloseUnregistersMetrics(t *testing.T) {
	root := fxDataset(t, 4)
	reg := prometheus.NewRegistry()
	cache := fxCache(t, "", 0)
	l := fxLoader(t, root, cache, func(o *Options) { o.Registerer = reg })
	pipe, err := augment.ParsePipeline(fxPipeline, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := &Options{Datasets: []DatasetSpec{{Name: "train", Path: root}}, Pipeline: pipe, Cache: cache, Registerer: reg}
	if l2, err := New(context.Background(), o); err == nil {
		l2.Close()
		t.Fatal("a second Loader registered the same metrics")
	}
	l.Close()
	l2, err := New(context.Background(), o)
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	l2.Close()
}
