package shardcache

import "hash/crc32"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksum is the CRC-32C of a shard's bytes, the one in its file name.
func checksum(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Checksum returns the CRC-32C of b (Castagnoli, as hash/crc32 computes
// it): of a whole shard file, the checksum its name holds.
func Checksum(b []byte) uint32 { return checksum(b) }

// A ChecksumShift joins checksums of pieces of one length without reading
// them: the CRC is linear, so the checksum of A followed by B is the
// checksum of A multiplied by x^(8·len(B)) modulo the CRC's polynomial,
// plus the checksum of B, in GF(2). The zero value joins empty pieces.
type ChecksumShift struct {
	op uint32 // x^(8n) mod P, in the CRC's reflected bit order
}

// NewChecksumShift returns the shift for pieces of n >= 0 bytes.
func NewChecksumShift(n int64) ChecksumShift {
	p := uint32(1) << 31  // x^0
	sq := uint32(1) << 23 // x^8: one byte
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			p = mulMod(p, sq)
		}
		sq = mulMod(sq, sq)
	}
	return ChecksumShift{op: p}
}

// Join returns the checksum of A followed by B, where a is the checksum of
// A and b that of B, a piece of the shift's length.
func (s ChecksumShift) Join(a, b uint32) uint32 {
	if s.op == 0 { // the zero value: B is empty
		return a
	}
	return mulMod(s.op, a) ^ b
}

// mulMod returns a·b mod P for polynomials in the reflected bit order of
// hash/crc32 (bit 31 is x^0, bit 0 is x^31): for each term x^i of a, from
// x^0 up, it adds b·x^i.
func mulMod(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 { // b·x overflows x^31: reduce by P
			b = b>>1 ^ crc32.Castagnoli
		} else {
			b >>= 1
		}
	}
	return p
}
