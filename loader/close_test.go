package loader

import (
	"context"
	"errors"
	"testing"

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
