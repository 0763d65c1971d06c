package epoch

import (
	"encoding/binary"
	"errors"
	"hash/crc32"

	"github.com/loaderd/loaderd/shardcache"
)

// The journal of a partial shard (shardcache.Writer.Suspend) lists its
// ready rows: for each, the row number, the CRC-32C of its image bytes, the
// sample index and the label it carries, 24 bytes little-endian, after the
// magic "LDJ1" and before a CRC-32C of everything before it. A resumed
// shard trusts a row only when its bytes in the file still match.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rowCRC is the CRC-32C of a row's image bytes: the checksum of shard
// files, so that a commit joins the rows' (Shard.checksum).
func rowCRC(img []byte) uint32 { return shardcache.Checksum(img) }

// A JournalRow is one ready row of a partial shard.
type JournalRow struct {
	Row   int
	CRC   uint32 // CRC-32C of the image bytes
	Index uint64
	Label int64
}

const journalMagic = "LDJ1"

// errJournal reports a journal that does not parse or fails its checksum.
var errJournal = errors.New("epoch: bad journal")

func encodeJournal(rows []JournalRow) []byte {
	b := make([]byte, 0, len(journalMagic)+24*len(rows)+4)
	b = append(b, journalMagic...)
	for _, r := range rows {
		b = binary.LittleEndian.AppendUint32(b, uint32(r.Row))
		b = binary.LittleEndian.AppendUint32(b, r.CRC)
		b = binary.LittleEndian.AppendUint64(b, r.Index)
		b = binary.LittleEndian.AppendUint64(b, uint64(r.Label))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// DecodeJournal parses a partial shard's journal.
func DecodeJournal(b []byte) ([]JournalRow, error) {
	if len(b) < len(journalMagic)+4 || string(b[:4]) != journalMagic || (len(b)-8)%24 != 0 {
		return nil, errJournal
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return nil, errJournal
	}
	body = body[4:]
	out := make([]JournalRow, len(body)/24)
	for i := range out {
		q := body[24*i:]
		out[i] = JournalRow{
			Row:   int(binary.LittleEndian.Uint32(q)),
			CRC:   binary.LittleEndian.Uint32(q[4:]),
			Index: binary.LittleEndian.Uint64(q[8:]),
			Label: int64(binary.LittleEndian.Uint64(q[16:])),
		}
	}
	return out, nil
}
