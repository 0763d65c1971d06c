package tier

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the CRC-32C of b: the checksum of shard files (shardcache),
// rows and indexes.
func crc32c(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// An index describes the rows a data object holds. Its encoding, all
// little-endian:
//
//	magic     8 bytes  "LDTIDX1\n"
//	shard     uint32   the shard's number in its epoch
//	rows      uint32   the shard's row count
//	rowBytes  uint32   bytes of a row's image
//	n         uint32   entries that follow
//	dataSize  uint64   size of the data object
//	n entries, 32 bytes each, by row:
//	  row     uint32   row number in the shard
//	  crc     uint32   CRC-32C of the row's image bytes
//	  offset  uint64   of the image in the data object
//	  index   uint64   the sample the row holds
//	  label   int64
//	sum       uint32   CRC-32C of every byte above
type index struct {
	shard, rows, rowBytes int
	dataSize              int64
	entries               []entry // sorted by row, no repeats
}

// entry is one row of an index.
type entry struct {
	row    int
	crc    uint32
	offset int64
	index  uint64
	label  int64
}

const (
	indexMagic  = "LDTIDX1\n"
	indexHeader = len(indexMagic) + 4*4 + 8
	entrySize   = 32
)

// encode returns the index's bytes.
func (x *index) encode() []byte {
	b := make([]byte, 0, indexHeader+len(x.entries)*entrySize+4)
	b = append(b, indexMagic...)
	b = binary.LittleEndian.AppendUint32(b, uint32(x.shard))
	b = binary.LittleEndian.AppendUint32(b, uint32(x.rows))
	b = binary.LittleEndian.AppendUint32(b, uint32(x.rowBytes))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(x.entries)))
	b = binary.LittleEndian.AppendUint64(b, uint64(x.dataSize))
	for _, e := range x.entries {
		b = binary.LittleEndian.AppendUint32(b, uint32(e.row))
		b = binary.LittleEndian.AppendUint32(b, e.crc)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.offset))
		b = binary.LittleEndian.AppendUint64(b, e.index)
		b = binary.LittleEndian.AppendUint64(b, uint64(e.label))
	}
	return binary.LittleEndian.AppendUint32(b, crc32c(b))
}

// decodeIndex parses and checks an index: its checksum, that it belongs to
// shard and that every row's range lies in the data object. Any failure
// wraps ErrCorrupt.
func decodeIndex(b []byte, shard int) (*index, error) {
	bad := func(why string, args ...any) (*index, error) {
		return nil, fmt.Errorf("%w: index of shard %d: %s", ErrCorrupt, shard, fmt.Sprintf(why, args...))
	}
	if len(b) < indexHeader+4 || string(b[:len(indexMagic)]) != indexMagic {
		return bad("not an index (%d bytes)", len(b))
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if got := crc32c(body); got != sum {
		return bad("crc32c %08x, want %08x", got, sum)
	}
	le := binary.LittleEndian
	p := body[len(indexMagic):]
	x := &index{
		shard:    int(le.Uint32(p[0:])),
		rows:     int(le.Uint32(p[4:])),
		rowBytes: int(le.Uint32(p[8:])),
		dataSize: int64(le.Uint64(p[16:])),
	}
	n := int(le.Uint32(p[12:]))
	p = p[24:]
	switch {
	case x.shard != shard:
		return bad("it names shard %d", x.shard)
	case len(p) != n*entrySize:
		return bad("%d entries in %d bytes", n, len(p))
	case n > x.rows || x.rowBytes <= 0 || x.dataSize < 0:
		return bad("%d entries of %d rows of %d bytes", n, x.rows, x.rowBytes)
	}
	x.entries = make([]entry, n)
	for i := range x.entries {
		q := p[i*entrySize:]
		e := entry{
			row:    int(le.Uint32(q[0:])),
			crc:    le.Uint32(q[4:]),
			offset: int64(le.Uint64(q[8:])),
			index:  le.Uint64(q[16:]),
			label:  int64(le.Uint64(q[24:])),
		}
		if e.row >= x.rows || (i > 0 && e.row <= x.entries[i-1].row) {
			return bad("row %d out of order or out of range", e.row)
		}
		if e.offset < 0 || e.offset > x.dataSize-int64(x.rowBytes) {
			return bad("row %d at %d outside the %d-byte object", e.row, e.offset, x.dataSize)
		}
		x.entries[i] = e
	}
	return x, nil
}

// find returns the entry of row p.
func (x *index) find(p int) (entry, bool) {
	i, ok := slices.BinarySearchFunc(x.entries, p, func(e entry, p int) int { return e.row - p })
	if !ok {
		return entry{}, false
	}
	return x.entries[i], true
}
