package flightsvc

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/loaderd/loaderd/service"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, keyLen) }

func TestTicketRoundTrip(t *testing.T) {
	req := service.Request{Dataset: "train", Epoch: 4, BatchSize: 8, Rank: 1, WorldSize: 2, StartBatch: 3, GPU: "0"}
	tk, err := signTicket(testKey(1), req, "fp")
	if err != nil {
		t.Fatal(err)
	}
	got, fp, err := openTicket(testKey(1), tk)
	if err != nil || got != req || fp != "fp" {
		t.Fatalf("openTicket = %+v, %q, %v; want %+v, fp", got, fp, err, req)
	}
}

func TestTicketRejects(t *testing.T) {
	req := service.Request{Dataset: "train", BatchSize: 8, WorldSize: 1}
	good, err := signTicket(testKey(1), req, "fp")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		ticket []byte
		key    []byte
	}{
		{name: "empty", ticket: nil, key: testKey(1)},
		{name: "garbage", ticket: []byte("../../../etc/passwd"), key: testKey(1)},
		{name: "other key", ticket: good, key: testKey(2)},
		{name: "truncated", ticket: good[:len(good)-1], key: testKey(1)},
		{name: "extended", ticket: append(append([]byte(nil), good...), 0), key: testKey(1)},
		{name: "huge", ticket: make([]byte, maxTicketLen+1), key: testKey(1)},
	}
	// Every single-bit change anywhere is caught.
	for i := range good {
		m := append([]byte(nil), good...)
		m[i] ^= 0x04
		tests = append(tests, struct {
			name   string
			ticket []byte
			key    []byte
		}{name: "flipped byte", ticket: m, key: testKey(1)})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := openTicket(tc.key, tc.ticket); !errors.Is(err, ErrBadTicket) || !errors.Is(err, service.ErrInvalid) {
				t.Fatalf("openTicket error = %v; want ErrBadTicket", err)
			}
		})
	}
}

func FuzzOpenTicket(f *testing.F) {
	good, err := signTicket(testKey(1), service.Request{Dataset: "train", BatchSize: 8, WorldSize: 1}, "fp")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, _, err := openTicket(testKey(1), b); err != nil && !errors.Is(err, ErrBadTicket) {
			t.Fatalf("error %v is not ErrBadTicket", err)
		}
	})
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ticket.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != keyLen {
		t.Fatalf("key is %d bytes; want %d", len(k1), keyLen)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v; want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second LoadOrCreateKey = %x, %v; want the same key %x", k2, err, k1)
	}
	short := filepath.Join(dir, "short.key")
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateKey(short); err == nil {
		t.Error("LoadOrCreateKey accepted a 3-byte key")
	}
	if _, err := LoadOrCreateKey(filepath.Join(dir, "no", "such", "dir", "k")); err == nil {
		t.Error("LoadOrCreateKey in a missing directory succeeded")
	}
}
