package ntcopy

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// check copies src[so:so+n] into dst[do:do+n] with f and with the builtin
// copy, and fails unless both give the same bytes, in and around dst.
func check(t *testing.T, name string, f func(dst, src []byte) int, so, do, n int) {
	t.Helper()
	r := rand.New(rand.NewPCG(uint64(so), uint64(n)))
	src := make([]byte, so+n+64)
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	got := bytes.Repeat([]byte{0xa5}, do+n+64)
	want := bytes.Clone(got)
	c := f(got[do:do+n], src[so:so+n])
	copy(want[do:do+n], src[so:so+n])
	Fence()
	if c != n || !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes from offset %d to offset %d: copied %d, bytes differ: %v", name, n, so, do, c, !bytes.Equal(got, want))
	}
}

// TestCopy: Copy gives the builtin copy's bytes, touching nothing around
// dst, for every length to 300 and odd offsets of source and destination,
// a row of 224×224×3 bytes, and lengths on both sides of 128-byte blocks.
func TestCopy(t *testing.T) {
	t.Logf("non-temporal stores: %v", Available())
	lengths := []int{150528, 150528 + 31, 4096, 4096 + 127, 1 << 20}
	for n := 0; n <= 300; n++ {
		lengths = append(lengths, n)
	}
	for _, n := range lengths {
		for _, so := range []int{0, 1, 3, 17, 32, 63} {
			for _, do := range []int{0, 1, 5, 31, 32, 33} {
				check(t, "Copy", Copy, so, do, n)
				if Available() {
					check(t, "copyNT", func(d, s []byte) int { copyNT(d, s); return len(d) }, so, do, n)
				}
			}
		}
	}
}

// TestCopyLengths: Copy copies min(len(dst), len(src)) bytes, and
// overlapping slices as the builtin copy moves them.
func TestCopyLengths(t *testing.T) {
	src := bytes.Repeat([]byte{1, 2, 3}, 400)
	dst := make([]byte, 1000)
	if n := Copy(dst, src); n != 1000 || !bytes.Equal(dst, src[:1000]) {
		t.Fatalf("Copy into a shorter dst: %d", n)
	}
	dst = make([]byte, 2000)
	if n := Copy(dst, src); n != 1200 || !bytes.Equal(dst[:1200], src) || dst[1200] != 0 {
		t.Fatalf("Copy from a shorter src: %d", n)
	}
	for _, shift := range []int{-300, -1, 1, 300} {
		buf := make([]byte, 4000)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		want := bytes.Clone(buf)
		copy(want[1000+shift:3000+shift], want[1000:3000])
		Copy(buf[1000+shift:3000+shift], buf[1000:3000])
		if !bytes.Equal(buf, want) {
			t.Fatalf("overlapping Copy shifted by %d: other bytes than copy's", shift)
		}
	}
}

func FuzzCopy(f *testing.F) {
	f.Add(uint16(0), uint8(0), uint8(0))
	f.Add(uint16(300), uint8(1), uint8(31))
	f.Add(uint16(4099), uint8(33), uint8(7))
	f.Fuzz(func(t *testing.T, n uint16, so, do uint8) {
		check(t, "Copy", Copy, int(so), int(do), int(n))
	})
}
