package shardcache

import (
	"bytes"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// TestChecksumShift joins the checksums of random pieces and compares with
// the checksum of their concatenation.
func TestChecksumShift(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 7, 8, 100, 4096, 150528, 1 << 20} {
		shift := NewChecksumShift(int64(n))
		whole := make([]byte, 0, 4*n+50)
		head := make([]byte, r.IntN(50))
		for i := range head {
			head[i] = byte(r.Uint32())
		}
		whole = append(whole, head...)
		sum := Checksum(head)
		for range 4 {
			piece := make([]byte, n)
			for i := range piece {
				piece[i] = byte(r.Uint32())
			}
			whole = append(whole, piece...)
			sum = shift.Join(sum, Checksum(piece))
		}
		if want := crc32.Checksum(whole, crc32.MakeTable(crc32.Castagnoli)); sum != want {
			t.Errorf("pieces of %d bytes: joined %08x, want %08x", n, sum, want)
		}
	}
	if got := (ChecksumShift{}).Join(0x1234, 0); got != 0x1234 {
		t.Errorf("the zero shift joined an empty piece into %08x, want 00001234", got)
	}
}

// TestCommitSum commits shards with the checksum given: the right one is
// the name Commit would give and opens; a wrong one names the file wrongly,
// and the first Open finds it corrupt.
func TestCommitSum(t *testing.T) {
	c := openCache(t, t.TempDir(), nil)
	k := testKey(1)
	size := shardSize(2)
	want := pattern(k, 2, size)
	for _, tc := range []struct {
		name  string
		sum   uint32
		wrong bool
	}{
		{name: "right", sum: Checksum(want)},
		{name: "wrong", sum: Checksum(want) ^ 1, wrong: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := c.Create(k, 2, size, prepareSkeleton)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteAt(want, 0); err != nil {
				t.Fatal(err)
			}
			if err := w.CommitSum(tc.sum); err != nil {
				t.Fatalf("CommitSum = %v", err)
			}
			m, err := c.Open(k, 2)
			if tc.wrong {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Open after a wrong sum = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open = %v", err)
			}
			defer m.Release()
			if !bytes.Equal(m.Data(), want) {
				t.Error("Open returned other bytes than were written")
			}
		})
	}
}
