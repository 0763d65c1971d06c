package tier

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/loaderd/loaderd/shardcache"
)

// stalledIndex is a backend whose first read of an index hangs until its
// caller's context ends.
type stalledIndex struct {
	backend
	once    sync.Once
	stalled chan struct{} // closed when the first read of an index hangs
}

func (b *stalledIndex) get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	first := false
	if strings.HasSuffix(name, indexExt) {
		b.once.Do(func() { first = true })
	}
	if !first {
		return b.backend.get(ctx, name, off, n)
	}
	close(b.stalled)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestIndexReaderLeaves: callers that wait for another's read of an index
// get the index when that reader leaves mid-read (its context ends, as a
// stream's does when its client stops early), not the reader's
// cancellation: the loader would take it for an unreachable tier and
// compute rows the tier holds.
func TestIndexReaderLeaves(t *testing.T) {
	ctx := context.Background()
	url := "file://" + t.TempDir()
	k := shardcache.Key{Dataset: "d1", Pipeline: "p1", Seed: 7, Epoch: 3}
	lay := Layout{Rows: 4, RowBytes: 16, IndexOffset: 64, LabelOffset: 96, ImageOffset: 128, Size: 192}
	put, err := Open(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer put.Close()
	rows := []Row{{Row: 1, Index: 11, Label: 1, Image: make([]byte, 16)}, {Row: 3, Index: 13, Label: 3, Image: make([]byte, 16)}}
	if err := put.Epoch(k).PutRows(ctx, 2, rows, lay); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, url, nil) // another node: no index read yet
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := &stalledIndex{backend: s.b, stalled: make(chan struct{})}
	s.b = b
	ep := s.Epoch(k)
	leaving, leave := context.WithCancel(ctx)
	first := make(chan error, 1)
	go func() {
		_, _, err := ep.Available(leaving, 2)
		first <- err
	}()
	<-b.stalled
	// The second caller waits for the first one's read; the first leaves
	// then.
	s.indexWait = leave
	complete, have, err := ep.Available(ctx, 2)
	if err != nil || complete || !slices.Equal(have, []int{1, 3}) {
		t.Errorf("Available beside a reader that left = %v, %v, %v; want rows [1 3]", complete, have, err)
	}
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("the reader that left got %v; want its context's end", err)
	}
}
