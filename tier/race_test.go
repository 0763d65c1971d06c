package tier_test

import (
	"context"
	"sync"
	"testing"

	"github.com/loaderd/loaderd/tier"
)

// TestConcurrentUploadsAndQueries: uploads of parts and shards record
// themselves in the epoch's listing while other goroutines query it (the
// loader asks Holds and Available from streams and prefetch while its
// upload goroutines put parts). Run under -race (.ci/run does), this
// caught the listing's map written in place while callers read it.
func TestConcurrentUploadsAndQueries(t *testing.T) {
	ctx := context.Background()
	st, err := tier.Open(ctx, "file://"+t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ep := st.Epoch(key)
	if _, err := ep.Holds(ctx, 0); err != nil { // a listing to record into
		t.Fatal(err)
	}
	const shards = 8
	var wg, readers sync.WaitGroup
	done := make(chan struct{})
	for s := range shards {
		wg.Go(func() {
			data, lay := fakeShard(6, 64, uint64(s))
			var rows []tier.Row
			for p := range 3 {
				rows = append(rows, rowOf(data, lay, p))
			}
			if err := ep.PutRows(ctx, s, rows, lay); err != nil {
				t.Error(err)
			}
			if err := ep.PutShard(ctx, s, data, lay); err != nil {
				t.Error(err)
			}
		})
		readers.Go(func() { // until every upload is in
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := ep.Holds(ctx, s); err != nil {
					t.Error(err)
					return
				}
				if _, _, err := ep.Available(ctx, (s+1)%shards); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	got, err := ep.Complete(ctx)
	if err != nil || len(got) != shards {
		t.Fatalf("Complete = %v, %v; want all %d shards", got, err, shards)
	}
}
