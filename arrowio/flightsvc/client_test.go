package flightsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/loaderd/loaderd/service"
)

// TestLocation: endpoints that name a location are fetched from there.
func TestLocation(t *testing.T) {
	f := newFakeSource(t, 12, 4, 4)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	loc := "grpc+tcp://" + lis.Addr().String()
	s, err := New(&Options{Source: f, Location: loc})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Errorf("Addr before Serve = %v; want nil", s.Addr())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := s.Serve(context.Background(), lis); !errors.Is(err, ErrServing) {
			t.Errorf("second Serve = %v; want ErrServing", err)
		}
	}()
	// A client dialled elsewhere (here: the same server by another name)
	// follows the location.
	cl, err := Dial(testCtx(t), "localhost:"+fmt.Sprint(lis.Addr().(*net.TCPAddr).Port), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := service.Request{Dataset: "train", BatchSize: 5, WorldSize: 1}
	info, err := cl.Info(testCtx(t), req)
	if err != nil || len(info.Endpoint) != 1 || len(info.Endpoint[0].Location) != 1 || info.Endpoint[0].Location[0].Uri != loc {
		t.Fatalf("Info = %v, %v; want one endpoint at %s", info, err, loc)
	}
	for range 2 { // the second Fetch reuses the peer connection
		st, err := cl.Fetch(testCtx(t), req, nil)
		if err != nil || st.Rows != 12 || st.Batches != 3 {
			t.Fatalf("Fetch = %+v, %v; want 12 rows in 3 batches", st, err)
		}
	}
	cl.mu.Lock()
	peers := len(cl.peers)
	cl.mu.Unlock()
	if peers != 1 {
		t.Errorf("%d peer connections; want 1", peers)
	}
	if s.Addr().String() != lis.Addr().String() {
		t.Errorf("Addr = %v; want %v", s.Addr(), lis.Addr())
	}
}
