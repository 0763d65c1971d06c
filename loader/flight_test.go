package loader

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/service"
)

// fxServe serves l over Flight on a loopback port until the test ends and
// returns the address.
func fxServe(t testing.TB, l *Loader, opts *flightsvc.Options) string {
	t.Helper()
	o := flightsvc.Options{}
	if opts != nil {
		o = *opts
	}
	o.Source, o.Actions = l, l
	srv, err := flightsvc.New(&o)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ctx, lis); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return lis.Addr().String()
}

// fxDial connects a Go client to addr until the test ends.
func fxDial(t testing.TB, addr string) *flightsvc.Client {
	t.Helper()
	c, err := flightsvc.Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rowHash hashes rows in order: each row's index, label and image bytes.
type rowHash struct{ h hash.Hash }

func newRowHash() *rowHash { return &rowHash{h: sha256.New()} }

func (r *rowHash) add(index uint64, label int64, img []byte) {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], index)
	binary.LittleEndian.PutUint64(b[8:], uint64(label))
	r.h.Write(b[:])
	r.h.Write(img)
}

// addRecord hashes the rows of a record batch of the stream schema.
func (r *rowHash) addRecord(rec arrow.RecordBatch) error {
	idx, ok1 := rec.Column(0).(*array.Uint64)
	lbl, ok2 := rec.Column(1).(*array.Int64)
	if !ok1 || !ok2 {
		return fmt.Errorf("record columns %s, %s", rec.Column(0).DataType(), rec.Column(1).DataType())
	}
	imgs, err := arrowio.ImagesOf(rec)
	if err != nil {
		return err
	}
	n := int(rec.NumRows())
	if n == 0 {
		return nil
	}
	rb := len(imgs) / n
	for i := range n {
		r.add(idx.Value(i), lbl.Value(i), imgs[i*rb:(i+1)*rb])
	}
	return nil
}

func (r *rowHash) sum() string { return fmt.Sprintf("%x", r.h.Sum(nil)) }

// fxWantHash is the hash of the rows req asks of listing d, from epoch's
// rows by index (a fresh computation); no sample of d is undecodable.
func fxWantHash(t testing.TB, d *Dataset, seed uint64, req service.Request, rows map[uint64][]byte) string {
	t.Helper()
	o, err := NewOrder(d.Len(), seed, req)
	if err != nil {
		t.Fatal(err)
	}
	h := newRowHash()
	for k := range o.Batches() {
		for _, i := range o.Batch(k) {
			h.add(uint64(i), d.Samples[i].Label, rows[uint64(i)])
		}
	}
	return h.sum()
}

// TestTicketAcrossChange: over Flight, a ticket issued before the dataset
// changed gets FailedPrecondition; GetFlightInfo again gives a ticket of
// the new listing, which streams its rows (SPEC §4).
func TestTicketAcrossChange(t *testing.T) {
	root := fxDataset(t, 20)
	l := fxLoader(t, root, fxCache(t, "", 0), nil)
	c := fxDial(t, fxServe(t, l, nil))
	ctx := context.Background()
	req := fxReq(nil)
	info, err := c.Info(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "c0", "zz.png"), fxImage(55, 20), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := c.Rescan(ctx, "train")
	if err != nil || !res.Datasets[0].Changed || res.Datasets[0].Samples != 21 {
		t.Fatalf("rescan over Flight = %+v, %v", res, err)
	}
	st, err := c.Flight().DoGet(ctx, info.Endpoint[0].Ticket)
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("DoGet of a ticket from before the change = %v; want FailedPrecondition", err)
	}
	d, _ := l.Dataset("train")
	want := fxWantHash(t, d, 42, req, fxEpoch(t, root, 0, nil))
	h := newRowHash()
	if _, err := c.Fetch(ctx, req, h.addRecord); err != nil {
		t.Fatalf("stream after GetFlightInfo again: %v", err)
	}
	if got := h.sum(); got != want {
		t.Fatal("rows after the change differ from a fresh computation of the new listing")
	}
}
