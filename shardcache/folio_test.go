package shardcache

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeFolioShare reports the share of the pages of file held in the page
// cache in folios of at least 2 MiB, from /proc/self/pagemap and
// /proc/kpageflags (root only); ok is false where they cannot be read.
func hugeFolioShare(t *testing.T, file string) (share float64, ok bool) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	pm, err1 := os.Open("/proc/self/pagemap")
	kf, err2 := os.Open("/proc/kpageflags")
	if err1 != nil || err2 != nil {
		return 0, false
	}
	defer pm.Close()
	defer kf.Close()
	const page = 4096
	n := (len(m) + page - 1) / page
	ents := make([]byte, 8*n)
	if _, err := pm.ReadAt(ents, int64(uintptr(unsafe.Pointer(&m[0]))/page)*8); err != nil {
		return 0, false
	}
	const head, tail = 1 << 15, 1 << 16 // KPF_COMPOUND_HEAD, KPF_COMPOUND_TAIL
	var fl [8]byte
	huge, run := 0, 0
	end := func() {
		if run >= 512 {
			huge += run
		}
		run = 0
	}
	for i := range n {
		e := binary.LittleEndian.Uint64(ents[8*i:])
		pfn := e & (1<<55 - 1)
		if e&(1<<63) == 0 || pfn == 0 { // not present, or PFNs hidden
			return 0, false
		}
		if _, err := kf.ReadAt(fl[:], int64(pfn)*8); err != nil {
			return 0, false
		}
		flags := binary.LittleEndian.Uint64(fl[:])
		switch {
		case flags&tail != 0:
			run++
		case flags&head != 0:
			end()
			run = 1
		default:
			end()
		}
	}
	end()
	return float64(huge) / float64(n), true
}

// TestShardHugeFolios: rows written with WriteAt at offsets that are no
// multiple of a page still leave the shard in the page cache in huge
// folios (what local readers gain from: fewer folios to look up and copy,
// PMD-sized mappings). A control file of 8 MiB read under MADV_HUGEPAGE
// tells whether this kernel and file system give page-cache files huge
// folios at all.
func TestShardHugeFolios(t *testing.T) {
	dir := t.TempDir()
	control := filepath.Join(dir, "control")
	cf, err := os.Create(control)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(cf.Fd()), 0, 0, 8<<20); err != nil {
		t.Skipf("fallocate: %v", err)
	}
	cm, err := unix.Mmap(int(cf.Fd()), 0, 8<<20, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	hugeFolios(cm)
	share, ok := hugeFolioShare(t, control)
	_ = unix.Munmap(cm)
	_ = cf.Close()
	if !ok {
		t.Skip("needs /proc/kpageflags (root) to see folio sizes")
	} else if share < 0.5 {
		t.Skipf("this kernel and file system give page-cache files no huge folios (%.2f of a file read with MADV_HUGEPAGE)", share)
	}
	c := openCache(t, dir, nil)
	k := testKey(0)
	const row, rows = 150528, 200 // 224×224×3, about 29 MiB
	size := int64(4096 + row*rows)
	w, err := c.Create(k, 0, size, prepareSkeleton)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, row)
	for r := rows - 1; r >= 0; r-- {
		for i := range b {
			b[i] = byte(r + i)
		}
		if _, err := w.WriteAt(b, int64(4096+r*row)); err != nil {
			t.Fatal(err)
		}
	}
	file := w.Path()
	share, ok = hugeFolioShare(t, file)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("folio sizes readable for the control but not the shard")
	}
	t.Logf("share %.2f", share)
	if share < 0.5 {
		t.Errorf("%.2f of the shard's pages in huge folios; want most", share)
	}
}
