package tier

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/loaderd/loaderd/shardcache"
)

// A Layout says where a shard file keeps its rows (the offsets of
// arrowio.ShardLayout): row p's image is the RowBytes bytes at
// ImageOffset+p*RowBytes, its index the little-endian uint64 at
// IndexOffset+8p, its label the int64 at LabelOffset+8p.
type Layout struct {
	Rows        int
	RowBytes    int
	Size        int64 // bytes of the whole file
	ImageOffset int64
	IndexOffset int64
	LabelOffset int64
}

// A Row is one row of a shard: its number in the shard, the sample it
// holds (index and label) and its image bytes.
type Row struct {
	Row   int
	Index uint64
	Label int64
	Image []byte
}

// An Epoch is the tier's view of one epoch: the complete shards and the
// parts (rows of a shard one node computed) under its name. It is safe
// for concurrent use.
type Epoch struct {
	s   *Store
	key shardcache.Key
	dir string // prefix + key.Name() + "/"

	listMu sync.Mutex // serialises listings: concurrent callers share one; taken before mu

	mu     sync.Mutex          // guards the fields below; never held across I/O
	listed time.Time           // when shards was last listed; zero: never
	shards map[int]*holding    // the last listing, by shard; replaced, never changed (record)
	idx    map[string]*idxLoad // indexes read or being read, by data object (objects never change)
	meta   bool                // meta.json is known to exist
}

// idxLoad is one index being read: done is closed once x or err is set.
type idxLoad struct {
	done chan struct{}
	x    *index
	err  error
	left bool // err is the reader's context ending: a waiter reads again
}

// holding is what the tier holds of one shard: data objects whose index is
// present too.
type holding struct {
	complete string // the complete shard's data object, "" if none
	crc      uint32 // its CRC-32C (from its name)
	parts    []string
}

// Names of objects: shard-NNNNNN.<crc>.arrow and part-NNNNNN.<digest>.rows,
// each with a .idx beside it.
const (
	shardPrefix = "shard-"
	partPrefix  = "part-"
	shardExt    = ".arrow"
	partExt     = ".rows"
	indexExt    = ".idx"
	metaName    = "meta.json"
)

// indexName is the name of the index of data object name.
func indexName(name string) string {
	return strings.TrimSuffix(strings.TrimSuffix(name, shardExt), partExt) + indexExt
}

// parseObject parses a data object's name: its shard, and for a complete
// shard its CRC-32C.
func parseObject(name string) (shard int, crc uint32, complete, ok bool) {
	var rest, ext string
	switch {
	case strings.HasPrefix(name, shardPrefix) && strings.HasSuffix(name, shardExt):
		rest, ext, complete = name[len(shardPrefix):], shardExt, true
	case strings.HasPrefix(name, partPrefix) && strings.HasSuffix(name, partExt):
		rest, ext = name[len(partPrefix):], partExt
	default:
		return 0, 0, false, false
	}
	num, tag, found := strings.Cut(strings.TrimSuffix(rest, ext), ".")
	if !found || len(num) < 6 || tag == "" {
		return 0, 0, false, false
	}
	n, err := strconv.ParseUint(num, 10, 31)
	if err != nil {
		return 0, 0, false, false
	}
	if complete {
		c, err := strconv.ParseUint(tag, 16, 32)
		if err != nil || len(tag) != 8 {
			return 0, 0, false, false
		}
		crc = uint32(c)
	}
	return int(n), crc, complete, true
}

// Key returns the epoch's cache key.
func (e *Epoch) Key() shardcache.Key { return e.key }

// holdings returns the epoch's listing, listing it again when forced or
// when it is older than Options.ListInterval. The map is shared and must
// not be changed (record replaces it).
func (e *Epoch) holdings(ctx context.Context, force bool) (map[int]*holding, error) {
	e.mu.Lock()
	fresh := !e.listed.IsZero() && time.Since(e.listed) < e.s.opts.ListInterval
	shards, asked := e.shards, time.Now()
	e.mu.Unlock()
	if fresh && !force {
		return shards, nil
	}
	e.listMu.Lock()
	defer e.listMu.Unlock()
	e.mu.Lock()
	shared := e.listed.After(asked) // listed by another caller while this one waited
	shards = e.shards
	e.mu.Unlock()
	if shared {
		return shards, nil
	}
	objs, err := e.s.b.list(ctx, e.dir)
	e.s.met.request("list", err)
	if err != nil {
		return nil, err
	}
	names := make(map[string]bool, len(objs))
	for _, o := range objs {
		names[o.name] = true
	}
	shards = map[int]*holding{}
	meta := false
	for _, o := range objs {
		if o.name == metaName {
			meta = true
		}
		shard, crc, complete, ok := parseObject(o.name)
		if !ok || !names[indexName(o.name)] {
			continue // not a data object, or its index is not there yet
		}
		h := shards[shard]
		if h == nil {
			h = &holding{}
			shards[shard] = h
		}
		if complete {
			h.complete, h.crc = o.name, crc
		} else {
			h.parts = append(h.parts, o.name)
		}
	}
	e.mu.Lock()
	e.shards, e.listed = shards, time.Now()
	e.meta = e.meta || meta
	e.mu.Unlock()
	return shards, nil
}

// Refresh lists the epoch again now.
func (e *Epoch) Refresh(ctx context.Context) error {
	_, err := e.holdings(ctx, true)
	return err
}

// record notes an upload of this process in the last listing, if any, so
// that it counts before the next listing: change is applied to a copy of
// shard's holding in a copy of the map. A listing's map and its holdings
// are never changed once published, as holdings hands them out to callers
// that read them without the lock.
func (e *Epoch) record(shard int, change func(*holding)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.shards == nil {
		return
	}
	shards := maps.Clone(e.shards)
	h := &holding{}
	if old := shards[shard]; old != nil {
		*h = *old
		h.parts = slices.Clone(old.parts)
	}
	change(h)
	shards[shard] = h
	e.shards = shards
}

// Complete returns the shards whole in the tier, sorted, from a listing at
// most Options.ListInterval old.
func (e *Epoch) Complete(ctx context.Context) ([]int, error) {
	hs, err := e.holdings(ctx, false)
	if err != nil {
		return nil, err
	}
	var out []int
	for s, h := range hs {
		if h.complete != "" {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Holds reports whether the tier holds anything of shard, whole or in
// parts, by a listing at most Options.ListInterval old: no index is read.
func (e *Epoch) Holds(ctx context.Context, shard int) (bool, error) {
	hs, err := e.holdings(ctx, false)
	if err != nil {
		return false, err
	}
	return hs[shard] != nil, nil
}

// Available reports whether shard is whole in the tier and, if not, which
// of its rows the tier's parts hold (sorted), from a listing at most
// Options.ListInterval old. It reads the parts' indexes.
func (e *Epoch) Available(ctx context.Context, shard int) (complete bool, rows []int, err error) {
	hs, err := e.holdings(ctx, false)
	if err != nil {
		return false, nil, err
	}
	h := hs[shard]
	if h == nil {
		return false, nil, nil
	}
	if h.complete != "" {
		return true, nil, nil
	}
	seen := map[int]bool{}
	for _, p := range h.parts {
		x, err := e.index(ctx, shard, p)
		if err != nil {
			return false, nil, err
		}
		for _, en := range x.entries {
			seen[en.row] = true
		}
	}
	for r := range seen {
		rows = append(rows, r)
	}
	slices.Sort(rows)
	return false, rows, nil
}

// index returns the index of data object name of shard, reading it once:
// concurrent callers wait for the first one's read. A failed read is
// forgotten, so a later call tries again; so does a waiter whose reader
// left (its context ended mid-read), rather than take that reader's
// cancellation for its own: a stream that stops early must not make the
// prefetch beside it compute rows the tier holds.
func (e *Epoch) index(ctx context.Context, shard int, name string) (*index, error) {
	for {
		e.mu.Lock()
		ld := e.idx[name]
		mine := ld == nil
		if mine {
			ld = &idxLoad{done: make(chan struct{})}
			e.idx[name] = ld
		}
		e.mu.Unlock()
		if mine {
			return e.readIndex(ctx, shard, name, ld)
		}
		if e.s.indexWait != nil {
			e.s.indexWait()
		}
		select {
		case <-ld.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !ld.left {
			return ld.x, ld.err
		}
	}
}

// readIndex reads the index of data object name of shard for ld, which
// this caller registered, and forgets ld if the read failed.
func (e *Epoch) readIndex(ctx context.Context, shard int, name string, ld *idxLoad) (*index, error) {
	b, err := e.s.get(ctx, e.dir+indexName(name), 0, -1)
	if err == nil {
		if ld.x, err = decodeIndex(b, shard); err != nil {
			e.s.met.corrupt.Inc()
			err = fmt.Errorf("%s: %w", e.dir+indexName(name), err)
		}
	}
	ld.err, ld.left = err, err != nil && ctx.Err() != nil
	if err != nil {
		e.mu.Lock()
		delete(e.idx, name)
		e.mu.Unlock()
	}
	close(ld.done)
	return ld.x, ld.err
}

// ensureMeta writes the epoch's meta.json unless it is known to exist.
func (e *Epoch) ensureMeta(ctx context.Context) error {
	e.mu.Lock()
	done := e.meta
	e.mu.Unlock()
	if done {
		return nil
	}
	b, err := json.Marshal(struct {
		Dataset  string `json:"dataset"`
		Pipeline string `json:"pipeline"`
		Seed     uint64 `json:"seed"`
		Epoch    int    `json:"epoch"`
	}{e.key.Dataset, e.key.Pipeline, e.key.Seed, e.key.Epoch})
	if err != nil {
		return fmt.Errorf("tier: %w", err)
	}
	if err := e.s.put(ctx, e.dir+metaName, bytes.NewReader(b), int64(len(b))); err != nil {
		return err
	}
	e.mu.Lock()
	e.meta = true
	e.mu.Unlock()
	return nil
}

// PutShard uploads a complete shard: data is the whole committed file, laid
// out as lay. It does nothing when the tier already holds the shard with
// the same bytes, by the latest listing. The data object goes first and
// its index after it, so no reader takes it for whole before it is.
func (e *Epoch) PutShard(ctx context.Context, shard int, data []byte, lay Layout) error {
	if int64(len(data)) != lay.Size || lay.Rows <= 0 || lay.RowBytes <= 0 {
		return fmt.Errorf("tier: put shard %d: %d bytes for a layout of %d bytes, %d rows", shard, len(data), lay.Size, lay.Rows)
	}
	crc := crc32c(data)
	name := fmt.Sprintf("%s%06d.%08x%s", shardPrefix, shard, crc, shardExt)
	hs, err := e.holdings(ctx, false)
	if err != nil {
		return err
	}
	if h := hs[shard]; h != nil && h.complete == name {
		return nil
	}
	x := &index{shard: shard, rows: lay.Rows, rowBytes: lay.RowBytes, dataSize: lay.Size}
	le := binary.LittleEndian
	for p := range lay.Rows {
		off := lay.ImageOffset + int64(p)*int64(lay.RowBytes)
		if off+int64(lay.RowBytes) > lay.Size || lay.IndexOffset+8*int64(p)+8 > lay.Size || lay.LabelOffset+8*int64(p)+8 > lay.Size {
			return fmt.Errorf("tier: put shard %d: row %d outside the %d-byte file", shard, p, lay.Size)
		}
		x.entries = append(x.entries, entry{
			row:    p,
			crc:    crc32c(data[off : off+int64(lay.RowBytes)]),
			offset: off,
			index:  le.Uint64(data[lay.IndexOffset+8*int64(p):]),
			label:  int64(le.Uint64(data[lay.LabelOffset+8*int64(p):])),
		})
	}
	if err := e.put(ctx, shard, name, bytes.NewReader(data), int64(len(data)), x); err != nil {
		return err
	}
	e.record(shard, func(h *holding) { h.complete, h.crc = name, crc })
	return nil
}

// PutRows uploads rows of shard as a part: the rows one node computed of a
// shard it does not complete. Their images go into one data object, in row
// order, and the index after it. rows must not repeat a row.
func (e *Epoch) PutRows(ctx context.Context, shard int, rows []Row, lay Layout) error {
	if len(rows) == 0 {
		return nil
	}
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b Row) int { return cmp.Compare(a.Row, b.Row) })
	x := &index{shard: shard, rows: lay.Rows, rowBytes: lay.RowBytes, dataSize: int64(len(rows)) * int64(lay.RowBytes)}
	readers := make([]io.Reader, len(rows))
	h := sha256.New()
	for i, r := range rows {
		if len(r.Image) != lay.RowBytes || r.Row < 0 || r.Row >= lay.Rows || (i > 0 && r.Row == rows[i-1].Row) {
			return fmt.Errorf("tier: put rows of shard %d: row %d (%d bytes) does not fit %d rows of %d bytes, or repeats", shard, r.Row, len(r.Image), lay.Rows, lay.RowBytes)
		}
		en := entry{row: r.Row, crc: crc32c(r.Image), offset: int64(i) * int64(lay.RowBytes), index: r.Index, label: r.Label}
		x.entries = append(x.entries, en)
		readers[i] = bytes.NewReader(r.Image)
		fmt.Fprintf(h, "%d:%08x;", en.row, en.crc)
	}
	name := fmt.Sprintf("%s%06d.%s%s", partPrefix, shard, hex.EncodeToString(h.Sum(nil)[:8]), partExt)
	hs, err := e.holdings(ctx, false)
	if err != nil {
		return err
	}
	if hd := hs[shard]; hd != nil && (hd.complete != "" || slices.Contains(hd.parts, name)) {
		return nil // whole in the tier by now, or this very part is there
	}
	if err := e.put(ctx, shard, name, io.MultiReader(readers...), x.dataSize, x); err != nil {
		return err
	}
	e.record(shard, func(h *holding) { h.parts = append(h.parts, name) })
	ld := &idxLoad{done: make(chan struct{}), x: x}
	close(ld.done)
	e.mu.Lock()
	e.idx[name] = ld
	e.mu.Unlock()
	return nil
}

// put writes data object name and then its index x.
func (e *Epoch) put(ctx context.Context, shard int, name string, r io.Reader, size int64, x *index) error {
	if err := e.ensureMeta(ctx); err != nil {
		return err
	}
	if err := e.s.put(ctx, e.dir+name, r, size); err != nil {
		return err
	}
	b := x.encode()
	return e.s.put(ctx, e.dir+indexName(name), bytes.NewReader(b), int64(len(b)))
}

// ReadShard downloads shard whole into w (at offset 0 on) and checks it
// against the CRC-32C in its name and the size in its index. It returns
// ErrMissing when the tier does not hold the shard whole, and ErrCorrupt
// when the bytes fail the check: then what w received must not be used.
func (e *Epoch) ReadShard(ctx context.Context, shard int, w io.WriterAt) (int64, error) {
	hs, err := e.holdings(ctx, false)
	if err != nil {
		return 0, err
	}
	h := hs[shard]
	if h == nil || h.complete == "" {
		return 0, fmt.Errorf("%w: shard %d of %v", ErrMissing, shard, e.key)
	}
	x, err := e.index(ctx, shard, h.complete)
	if err != nil {
		return 0, err
	}
	rc, err := e.s.b.get(ctx, e.dir+h.complete, 0, -1)
	e.s.met.request("get", err)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	sum := crc32.New(castagnoli)
	buf := make([]byte, 1<<20)
	var n int64
	for {
		k, rerr := rc.Read(buf)
		if k > 0 {
			if n+int64(k) > x.dataSize {
				e.s.met.corrupt.Inc()
				return n, fmt.Errorf("%w: %s is longer than its %d bytes", ErrCorrupt, e.dir+h.complete, x.dataSize)
			}
			sum.Write(buf[:k])
			if _, err := w.WriteAt(buf[:k], n); err != nil {
				return n, fmt.Errorf("tier: read shard %d: %w", shard, err)
			}
			n += int64(k)
			e.s.met.downloaded.Add(float64(k))
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, fmt.Errorf("tier: read %s: %w", e.dir+h.complete, rerr)
		}
	}
	if got := sum.Sum32(); n != x.dataSize || got != h.crc {
		e.s.met.corrupt.Inc()
		return n, fmt.Errorf("%w: %s: %d bytes with crc32c %08x, want %d with %08x", ErrCorrupt, e.dir+h.complete, n, got, x.dataSize, h.crc)
	}
	return n, nil
}

// ReadRows reads the rows want of shard that the tier holds, by byte
// range, from the complete shard if there is one, else from the parts.
// Each row is checked against its CRC-32C on arrival; a row that fails is
// left out (and counted), never returned. Rows the tier lacks are left out
// too. On a failed request it returns the rows read so far and the error.
func (e *Epoch) ReadRows(ctx context.Context, shard int, want []int) ([]Row, error) {
	hs, err := e.holdings(ctx, false)
	if err != nil {
		return nil, err
	}
	h := hs[shard]
	if h == nil || len(want) == 0 {
		return nil, nil
	}
	sources := h.parts
	if h.complete != "" {
		sources = []string{h.complete}
	}
	// Each wanted row from the first source that holds it.
	type pick struct {
		src string
		en  entry
	}
	var picks []pick
	rowBytes := 0
	left := map[int]bool{}
	for _, p := range want {
		left[p] = true
	}
	for _, src := range sources {
		if len(left) == 0 {
			break
		}
		x, err := e.index(ctx, shard, src)
		if err != nil {
			return nil, err
		}
		rowBytes = x.rowBytes
		for p := range left {
			if en, ok := x.find(p); ok {
				picks = append(picks, pick{src, en})
				delete(left, p)
			}
		}
	}
	slices.SortFunc(picks, func(a, b pick) int {
		return cmp.Or(strings.Compare(a.src, b.src), cmp.Compare(a.en.offset, b.en.offset))
	})
	gap := e.s.opts.MergeGap
	if gap == 0 {
		gap = int64(rowBytes)
	}
	var out []Row
	for i := 0; i < len(picks); {
		// A run of rows of one object close enough to read in one request.
		j := i + 1
		for j < len(picks) && picks[j].src == picks[i].src &&
			picks[j].en.offset-(picks[j-1].en.offset+int64(rowBytes)) <= gap {
			j++
		}
		lo, hi := picks[i].en.offset, picks[j-1].en.offset+int64(rowBytes)
		b, err := e.s.get(ctx, e.dir+picks[i].src, lo, hi-lo)
		if err != nil {
			return out, err
		}
		for _, pk := range picks[i:j] {
			img := b[pk.en.offset-lo : pk.en.offset-lo+int64(rowBytes)]
			if crc32c(img) != pk.en.crc {
				e.s.met.corrupt.Inc()
				e.s.log.Warn("tier: row failed its checksum; computing it instead", "object", e.dir+pk.src, "row", pk.en.row)
				continue
			}
			out = append(out, Row{Row: pk.en.row, Index: pk.en.index, Label: pk.en.label, Image: img})
		}
		i = j
	}
	slices.SortFunc(out, func(a, b Row) int { return cmp.Compare(a.Row, b.Row) })
	return out, nil
}
