package flightsvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/internal/ntcopy"
	"github.com/loaderd/loaderd/service"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// ErrTransport reports a transport Fetch does not know.
var ErrTransport = errors.New(`flightsvc: transport: want "auto", "local" or "flight"`)

// bootIDPath is where the kernel publishes its boot id.
const bootIDPath = "/proc/sys/kernel/random/boot_id"

// A localDoor is what a client on the server's host learned from
// ActionLocalInfo: where it sees the cache, and the headers proving it may
// read it.
type localDoor struct {
	dir string
	md  metadata.MD
}

// CacheUnreadableHint ends the reason a client gives when it cannot read
// the server's cache in place: what would let it. It names no API or flag,
// so a program can say it in its own terms (loaderd fetch names its
// --cache-dir and serve's --cache-group).
const CacheUnreadableHint = "read access comes with the group the server gives its cache; where this host mounts the cache at another path, the client must be given that path"

// localDoor finds out, once per Client, whether c can read its server's
// cache in place. An error wrapping service.ErrNoLocal says why not (and
// is remembered); any other error (the server unreachable, say) is not.
func (c *Client) localDoor(ctx context.Context) (*localDoor, error) {
	c.mu.Lock()
	door, derr := c.door, c.doorErr
	c.mu.Unlock()
	if door != nil || derr != nil {
		return door, derr
	}
	return c.newDoor(ctx)
}

// newDoor finds out afresh whether c can read its server's cache in place
// (a restarted server has a new token), remembering the answer.
func (c *Client) newDoor(ctx context.Context) (*localDoor, error) {
	door, err := c.openDoor(ctx)
	if err != nil && !errors.Is(err, service.ErrNoLocal) {
		return nil, err
	}
	c.mu.Lock()
	c.door, c.doorErr = door, err
	c.mu.Unlock()
	return door, err
}

func (c *Client) openDoor(ctx context.Context) (*localDoor, error) {
	res, err := c.Action(ctx, ActionLocalInfo, nil)
	switch status.Code(err) {
	case codes.OK:
	case codes.FailedPrecondition: // a loaderd without them, or one whose cache cannot hold leases
		return nil, fmt.Errorf("flightsvc: %w: %s", service.ErrNoLocal, noLocalReason(err))
	case codes.Unimplemented, codes.InvalidArgument: // no actions here, or an older loaderd
		return nil, fmt.Errorf("flightsvc: %w: the server serves no local streams (%s)", service.ErrNoLocal, status.Convert(err).Message())
	default:
		return nil, err
	}
	var info LocalInfo
	if len(res) != 1 || json.Unmarshal(res[0], &info) != nil || info.CacheDir == "" || !filepath.IsLocal(filepath.FromSlash(info.TokenFile)) {
		return nil, fmt.Errorf("flightsvc: %w: the server's %s answer is not understood", service.ErrNoLocal, ActionLocalInfo)
	}
	boot, err := os.ReadFile(bootIDPath)
	if err != nil {
		return nil, fmt.Errorf("flightsvc: %w: this host's boot id: %w", service.ErrNoLocal, err)
	}
	if b := strings.TrimSpace(string(boot)); info.BootID == "" || b != info.BootID {
		return nil, fmt.Errorf("flightsvc: %w: the server is on another host (its boot id %q, ours %q)", service.ErrNoLocal, info.BootID, b)
	}
	dir := info.CacheDir
	if c.opts.CacheDir != "" {
		dir = c.opts.CacheDir
	}
	token, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(info.TokenFile)))
	if err != nil {
		return nil, fmt.Errorf("flightsvc: %w: cannot read the server's cache %s: %w (%s)", service.ErrNoLocal, dir, err, CacheUnreadableHint)
	}
	md := metadata.Pairs(HeaderBootID, info.BootID, HeaderCacheToken, strings.TrimSpace(string(token)))
	return &localDoor{dir: dir, md: md}, nil
}

// fallback reports whether Fetch with transport "auto" may stream the
// ordinary way after err: the local transport is not offered to this
// client.
func fallback(err error) bool {
	return errors.Is(err, service.ErrNoLocal) || status.Code(err) == codes.FailedPrecondition
}

// noLocalReason is the reason an error wrapping service.ErrNoLocal (or a
// FailedPrecondition status) gives, without the prefixes.
func noLocalReason(err error) string {
	msg := status.Convert(err).Message()
	if _, after, ok := strings.Cut(msg, service.ErrNoLocal.Error()+": "); ok {
		return after
	}
	return strings.TrimPrefix(msg, "flightsvc: ")
}

// fetchAuto streams req locally when c may, else the ordinary way, saying
// why once per reason (ClientOptions.Logger).
func (c *Client) fetchAuto(ctx context.Context, req service.Request, fn func(arrow.RecordBatch) error) (FetchStats, error) {
	door, err := c.localDoor(ctx)
	if err == nil {
		var st FetchStats
		st, err = c.fetchLocal(ctx, req, fn, door)
		if err == nil || !fallback(err) || st.Batches > 0 {
			return st, err
		}
	}
	if !fallback(err) {
		return FetchStats{}, err
	}
	why := noLocalReason(err)
	c.mu.Lock()
	logged := c.fellBack[why]
	if c.fellBack == nil {
		c.fellBack = map[string]bool{}
	}
	c.fellBack[why] = true
	c.mu.Unlock()
	if !logged {
		c.log.Info("loaderd: streaming over Flight, not from the cache in place", "why", why)
	}
	req.Transport = ""
	st, err := c.fetchFlight(ctx, req, fn)
	st.Fallback = why
	return st, err
}

// fetchLocal streams req as plans (SPEC §9) and gathers each batch's rows
// from the files they name into one buffer: one copy, from the page cache.
// A refusal with the door c remembered asks for a new one once: the server
// may have restarted (a new token).
func (c *Client) fetchLocal(ctx context.Context, req service.Request, fn func(arrow.RecordBatch) error, door *localDoor) (FetchStats, error) {
	st, err := c.fetchLocalOnce(ctx, req, fn, door)
	if err == nil || !fallback(err) || st.Batches > 0 {
		return st, err
	}
	if door, err = c.newDoor(ctx); err != nil {
		return st, StatusOf(err)
	}
	return c.fetchLocalOnce(ctx, req, fn, door)
}

func (c *Client) fetchLocalOnce(ctx context.Context, req service.Request, fn func(arrow.RecordBatch) error, door *localDoor) (FetchStats, error) {
	start := time.Now()
	stats := FetchStats{Transport: service.TransportLocal}
	req.Transport = service.TransportLocal
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		ctx = metadata.NewOutgoingContext(ctx, metadata.Join(md, door.md))
	} else {
		ctx = metadata.NewOutgoingContext(ctx, door.md)
	}
	info, err := c.Info(ctx, req)
	if err != nil {
		return stats, err
	}
	if len(info.GetEndpoint()) != 1 {
		return stats, fmt.Errorf("flightsvc: a local stream with %d endpoints, want 1", len(info.GetEndpoint()))
	}
	planSchema, err := flight.DeserializeSchema(info.GetSchema(), memory.DefaultAllocator)
	if err != nil {
		return stats, fmt.Errorf("flightsvc: local stream schema: %w", err)
	}
	data, rowBytes, err := arrowio.ImageSchemaOf(planSchema)
	if err != nil {
		return stats, err
	}
	g := &gatherer{files: planFiles{dir: door.dir}, data: data, rowBytes: rowBytes, batchSize: req.BatchSize, mem: c.opts.Allocator,
		threads: c.opts.GatherThreads}
	if g.threads <= 0 {
		g.threads = min(4, runtime.GOMAXPROCS(0))
	}
	if g.mem == nil {
		g.mem = &c.reuse
	}
	defer g.close()
	err = c.exchange(ctx, info.GetEndpoint()[0].GetTicket().GetTicket(), info.GetTotalRecords(), func(rec arrow.RecordBatch) error {
		p, err := arrowio.PlanOf(rec)
		if err != nil || len(p.Index) == 0 {
			return err
		}
		if stats.Batches == 0 {
			stats.FirstBatch = time.Since(start)
		}
		stats.Batches++
		stats.Rows += int64(len(p.Index))
		stats.Bytes += int64(len(p.Index)) * int64(rowBytes+16)
		return g.batch(p, fn)
	})
	stats.Elapsed = time.Since(start)
	return stats, err
}

// exchange runs the DoExchange of a local ticket: it hands each plan to
// each until the end (a plan of no rows), then half-closes (the server then
// releases the files) and returns the call's status: a stream that failed
// midway fails after its batches, as over DoGet. total is the rows the plan
// promised.
func (c *Client) exchange(ctx context.Context, ticket []byte, total int64, each func(arrow.RecordBatch) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the call if each fails
	st, err := c.fc.DoExchange(ctx)
	if err != nil {
		return err
	}
	if err := st.Send(&flight.FlightData{FlightDescriptor: &flight.FlightDescriptor{Type: flight.DescriptorCMD, Cmd: ticket}}); err != nil {
		return drainExchange(st)
	}
	rdr, err := flight.NewRecordReader(st)
	if err != nil {
		return err
	}
	defer rdr.Release()
	var rows int64
	ended := false
	for !ended && rdr.Next() {
		rec := rdr.RecordBatch()
		if rec.NumRows() == 0 {
			ended = true
			break
		}
		rows += rec.NumRows()
		if err := each(rec); err != nil {
			return c.stopped(ctx, err)
		}
	}
	if !ended { // the call ended without the end of the plans: its error
		if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
			return c.stopped(ctx, err)
		}
		return fmt.Errorf("flightsvc: local stream ended after %d of %d rows without its end", rows, total)
	}
	if err := st.CloseSend(); err != nil {
		return err
	}
	for rdr.Next() { // nothing more is expected: read to the call's status
	}
	if err := rdr.Err(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if rows != total {
		return fmt.Errorf("flightsvc: local stream of %d rows, %d promised", rows, total)
	}
	return nil
}

// stopped returns what a local stream that failed with err ended with: the
// caller's cancellation, or the client's Close, when either came first.
// The server then released the stream's files, so a plan still buffered
// here names files that are gone: that failure is their consequence.
func (c *Client) stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if c.conn.GetState() == connectivity.Shutdown {
		return status.Errorf(codes.Canceled, "flightsvc: the client was closed during the stream (%v)", err)
	}
	return err
}

// drainExchange reads st to its status after a failed send.
func drainExchange(st flight.FlightService_DoExchangeClient) error {
	for {
		if _, err := st.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("flightsvc: the server ended a local stream before its request")
			}
			return err
		}
	}
}

// planFiles reads the rows of the files a stream's plans name, each opened and mapped
// once per stream (read-only, shared) and unmapped at its end: the server
// leases them to the stream (SPEC §9), so nothing under a mapping changes
// while it lasts. A row is copied from the mapping straight into the batch
// buffer with non-temporal stores (ntcopy): one copy from the page cache.
// A file that cannot be mapped is read with pread.
type planFiles struct {
	dir string
	f   map[string]*planFile
}

// mapPlanFiles is false in tests of the pread path.
var mapPlanFiles = true

// A planFile is one file of a stream: its mapping, or (when it could not
// be mapped) its open file.
type planFile struct {
	m    []byte   // the whole file, mapped; nil when fh reads it
	fh   *os.File // nil when m holds it
	size int64
}

func (pf *planFiles) get(name string) (*planFile, error) {
	if f, ok := pf.f[name]; ok {
		return f, nil
	}
	fh, err := os.Open(filepath.Join(pf.dir, filepath.FromSlash(name)))
	if err != nil {
		return nil, fmt.Errorf("flightsvc: a plan's file: %w", err)
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("flightsvc: a plan's file: %w", err)
	}
	if pf.f == nil {
		pf.f = map[string]*planFile{}
	}
	f := &planFile{fh: fh, size: fi.Size()}
	if mapPlanFiles && f.size > 0 && int64(int(f.size)) == f.size {
		// Without MAP_POPULATE: a rank of several reads a part of each
		// file, and its rows' faults map their neighbours too (measured:
		// the same for one reader, 1.07× for rank 1 of 4).
		if m, err := unix.Mmap(int(fh.Fd()), 0, int(f.size), unix.PROT_READ, unix.MAP_SHARED); err == nil {
			f.m, f.fh = m, nil
			fh.Close()
		}
	}
	pf.f[name] = f
	return f, nil
}

// read copies the row at off into dst (of the row's length).
func (f *planFile) read(dst []byte, off int64) error {
	if f.m != nil {
		ntcopy.Copy(dst, f.m[off:off+int64(len(dst))])
		return nil
	}
	_, err := f.fh.ReadAt(dst, off)
	return err
}

func (pf *planFiles) close() {
	for _, f := range pf.f {
		if f.m != nil {
			_ = unix.Munmap(f.m)
		} else {
			_ = f.fh.Close()
		}
	}
	pf.f = nil
}

// A gatherer assembles the batches of a local stream.
type gatherer struct {
	files     planFiles
	data      *arrow.Schema // the ordinary stream's
	rowBytes  int
	batchSize int
	mem       memory.Allocator
	bb        *arrowio.BatchBuilder
	scratch   []byte // raw mode's batch buffer, from mem
	threads   int    // goroutines copying a batch's rows
}

// copyRows reads the image bytes of every row r of p into dst[r]
// (rowBytes long each), on up to g.threads goroutines: the copy from the
// page cache is the reader's whole cost, and a trainer's host has cores.
func (g *gatherer) copyRows(p *arrowio.Plan, dst [][]byte) error {
	files := make([]*planFile, len(dst))
	for r := range dst {
		f, err := g.files.get(p.File[r])
		if err != nil {
			return err
		}
		off := p.Offset[r]
		if off > f.size || f.size-off < int64(g.rowBytes) {
			return fmt.Errorf("flightsvc: a plan names bytes [%d, %d) of %s, a file of %d bytes", off, off+int64(g.rowBytes), p.File[r], f.size)
		}
		files[r] = f
	}
	read := func(r int) error {
		if err := files[r].read(dst[r][:g.rowBytes], p.Offset[r]); err != nil {
			return fmt.Errorf("flightsvc: read a row of %s: %w", p.File[r], err)
		}
		return nil
	}
	// Each goroutine fences its non-temporal stores before the batch is
	// handed out (its end synchronises with Wait, which drains them too).
	threads := min(g.threads, len(dst))
	if threads <= 1 {
		defer ntcopy.Fence()
		for r := range dst {
			if err := read(r); err != nil {
				return err
			}
		}
		return nil
	}
	var eg errgroup.Group
	for t := range threads {
		eg.Go(func() error {
			defer ntcopy.Fence()
			for r := t; r < len(dst); r += threads {
				if err := read(r); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return eg.Wait()
}

// batch copies the rows of p into one buffer and hands the record to fn;
// with fn nil it copies them into a scratch buffer (what a trainer's copy
// costs) and drops them.
func (g *gatherer) batch(p *arrowio.Plan, fn func(arrow.RecordBatch) error) error {
	n := len(p.Index)
	dst := make([][]byte, n)
	if fn == nil {
		if need := n * g.rowBytes; len(g.scratch) < need {
			if g.scratch != nil {
				g.mem.Free(g.scratch)
			}
			g.scratch = g.mem.Allocate(max(need, g.batchSize*g.rowBytes))
		}
		for r := range n {
			dst[r] = g.scratch[r*g.rowBytes : (r+1)*g.rowBytes]
		}
		return g.copyRows(p, dst)
	}
	if g.bb == nil {
		var err error
		if g.bb, err = arrowio.NewBatchBuilder(g.mem, g.data, max(g.batchSize, n)); err != nil {
			return err
		}
	}
	for r := range n {
		row, err := g.bb.Next(p.Index[r], p.Label[r])
		if err != nil {
			g.bb.Release()
			return err
		}
		dst[r] = row
	}
	if err := g.copyRows(p, dst); err != nil {
		g.bb.Release()
		return err
	}
	rec := g.bb.NewRecord()
	defer rec.Release()
	return fn(rec)
}

func (g *gatherer) close() {
	if g.bb != nil {
		g.bb.Release()
	}
	if g.scratch != nil {
		g.mem.Free(g.scratch)
		g.scratch = nil
	}
	g.files.close()
}

// reuseAllocator is a memory.Allocator that hands freed buffers out again
// without zeroing them: a local stream's batch buffers are overwritten
// row by row, and zeroing 38 MB per batch would double the copy.
type reuseAllocator struct {
	mu   sync.Mutex       // guards free; a leaf lock
	free map[int][][]byte // by length
}

const reuseKeep = 4 // buffers kept per length

func (a *reuseAllocator) Allocate(n int) []byte {
	a.mu.Lock()
	if l := a.free[n]; len(l) > 0 {
		b := l[len(l)-1]
		a.free[n] = l[:len(l)-1]
		a.mu.Unlock()
		return b
	}
	a.mu.Unlock()
	return make([]byte, n)
}

func (a *reuseAllocator) Reallocate(n int, b []byte) []byte {
	if n <= cap(b) {
		return b[:n]
	}
	nb := a.Allocate(n)
	copy(nb, b)
	a.Free(b)
	return nb
}

func (a *reuseAllocator) Free(b []byte) {
	if cap(b) == 0 {
		return
	}
	b = b[:cap(b)]
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.free == nil {
		a.free = map[int][][]byte{}
	}
	if len(a.free[len(b)]) < reuseKeep {
		a.free[len(b)] = append(a.free[len(b)], b)
	}
}
