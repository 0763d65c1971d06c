package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/loader"
	"github.com/loaderd/loaderd/service"
	"github.com/loaderd/loaderd/tier/tiertest"
)

// The many-node proof (issue #16), on one machine: network namespaces
// joined by a bridge stand for hosts. One holds the object store (rclone
// serve s3), three hold a loaderd "node" each (this test binary run as
// loaderd), and the test, in the root namespace, is the trainers of a job of
// world size 6, two ranks per node, over mutual TLS.

// netns is the little network of the test: a bridge in the root namespace
// and a namespace per host, each with a veth on the bridge.
type netns struct {
	t      *testing.T
	prefix string // of every name made, unique per run
	bridge string
	subnet string // "10.99.K."
}

// ipCmd runs ip(8) with args.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// newNetns makes the bridge, or skips the test naming why namespaces cannot
// be made here.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip(8) (iproute2) on this machine: network namespaces cannot be made")
	}
	pid := os.Getpid()
	n := &netns{t: t, prefix: fmt.Sprintf("ldt%d", pid%100000), subnet: fmt.Sprintf("10.99.%d.", pid%250+1)}
	n.bridge = n.prefix + "br"
	probe := n.prefix + "probe"
	if err := ipCmd("netns", "add", probe); err != nil {
		t.Skipf("network namespaces cannot be made on this machine (needs root or CAP_SYS_ADMIN): %v", err)
	}
	_ = ipCmd("netns", "del", probe)
	t.Cleanup(n.cleanup)
	for _, args := range [][]string{
		{"link", "add", n.bridge, "type", "bridge"},
		{"addr", "add", n.subnet + "1/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// host makes namespace name with address subnet+octet on the bridge and
// returns the namespace's full name.
func (n *netns) host(name string, octet int) string {
	n.t.Helper()
	ns := n.prefix + name
	outer, inner := ns+"o", ns+"i"
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", outer, "type", "veth", "peer", "name", inner},
		{"link", "set", inner, "netns", ns},
		{"link", "set", outer, "master", n.bridge},
		{"link", "set", outer, "up"},
		{"-n", ns, "addr", "add", n.subnet + strconv.Itoa(octet) + "/24", "dev", inner},
		{"-n", ns, "link", "set", inner, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			n.t.Fatal(err)
		}
	}
	return ns
}

// cleanup removes every namespace and link of the run (a namespace's
// veth goes with it).
func (n *netns) cleanup() {
	out, _ := exec.Command("ip", "netns", "list").Output()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && strings.HasPrefix(f[0], n.prefix) {
			_ = ipCmd("netns", "del", f[0])
		}
	}
	_ = ipCmd("link", "del", n.bridge)
}

// proc is a process run in a namespace, stopped when the test ends.
type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

// start runs args in namespace ns with env added.
func start(t *testing.T, ns string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() { p.stop(syscall.SIGKILL) })
	return p
}

// stop sends sig and waits for the process to end (ip netns exec execs
// the command, so the signal reaches it).
func (p *proc) stop(sig syscall.Signal) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitTCP waits until addr accepts connections.
func waitTCP(t *testing.T, addr string, p *proc) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("%s: the process exited:\n%s", addr, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer within 90 s:\n%s", addr, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mnode is a loaderd node of the test.
type mnode struct {
	ns, ip, cache string
	p             *proc
}

func (m *mnode) flight() string  { return "grpc+tls://" + m.ip + ":8815" }
func (m *mnode) metrics() string { return "http://" + m.ip + ":9100/metrics" }

// scrape sums the samples of metric name (all label values) on node m.
func scrape(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// rankDigests streams one rank and returns a SHA-256 per batch of its
// values (index, label, image), and the time to its first batch.
func rankDigests(ctx context.Context, addr string, tlsCfg *tls.Config, req service.Request, stopAfter int) ([]string, time.Duration, error) {
	cl, err := flightsvc.Dial(ctx, addr, &flightsvc.ClientOptions{TLS: tlsCfg, Transport: service.TransportFlight})
	if err != nil {
		return nil, 0, err
	}
	defer cl.Close()
	var out []string
	errStop := errors.New("enough")
	st, err := cl.Fetch(ctx, req, func(rec arrow.RecordBatch) error {
		h := sha256.New()
		if err := arrowio.WriteValues(h, rec); err != nil {
			return err
		}
		out = append(out, hex.EncodeToString(h.Sum(nil)))
		if stopAfter > 0 && len(out) == stopAfter {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return out, st.FirstBatch, err
}

// TestManyNodes is the proof across hosts of issue #16.
func TestManyNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the many-node test starts four processes")
	}
	rclone := tiertest.NeedRclone(t)
	nw := newNetns(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// LOADERD_MANYNODES_DATA=/data/photoset (and _PIPELINE, _BATCH,
	// _SHARD, _WORKERS) runs it on real data for the README's figures.
	const world = 6
	data, pipeline, batch, shard, workers := "", tinyPipeline, 4, "8", "1"
	n := 96 // a multiple of the world size: no padded rows, each row read once per epoch
	if dir := os.Getenv("LOADERD_MANYNODES_DATA"); dir != "" {
		ds, err := loader.OpenDataset("d", dir)
		if err != nil {
			t.Fatal(err)
		}
		data, n, pipeline, shard = dir, ds.Len(), envOr("LOADERD_MANYNODES_PIPELINE", "imagenet-train"), envOr("LOADERD_MANYNODES_SHARD", "256")
		batch, _ = strconv.Atoi(envOr("LOADERD_MANYNODES_BATCH", "32"))
		workers = envOr("LOADERD_MANYNODES_WORKERS", "1")
	} else {
		data = smallData(t, n, false)
	}
	// Without padding (N a multiple of the world size, or drop_last) each
	// row an epoch's ranks read is one sample: the node-aware bound.
	dropLast := n%world != 0
	bound := n
	if dropLast {
		bound = world * (n / world / batch) * batch
	}
	req := func(e, r int) service.Request {
		return service.Request{Dataset: "d", Epoch: e, BatchSize: batch, Rank: r, WorldSize: world, Shuffle: true, DropLast: dropLast}
	}
	ips := []string{nw.subnet + "11", nw.subnet + "12", nw.subnet + "13"}
	pki := makePKI(t, t.TempDir(), ips...)
	caPEM, _ := os.ReadFile(pki.ca)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	clientCert, err := tls.LoadX509KeyPair(pki.clientCert, pki.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}

	// The object store, on its own host.
	storeNS := nw.host("s", 2)
	storeDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(storeDir, "loaderd-test"), 0o755); err != nil {
		t.Fatal(err)
	}
	storeAddr := nw.subnet + "2:9000"
	secret := "netns-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	store := start(t, storeNS, []string{"RCLONE_CONFIG=" + filepath.Join(storeDir, "rclone.conf")},
		append([]string{rclone}, tiertest.Args(storeAddr, "AKIDNODES", secret, storeDir, t.TempDir())...)...)
	waitTCP(t, storeAddr, store)

	common := []string{"--data", "d=" + data, "--pipeline", pipeline, "--shard-size", shard, "--workers", workers, "--log-level", "info"}
	nodeEnv := []string{"LOADERD_TEST_MAIN=1", "AWS_ENDPOINT_URL=http://" + storeAddr, "AWS_ACCESS_KEY_ID=AKIDNODES",
		"AWS_SECRET_ACCESS_KEY=" + secret, "AWS_REGION=us-east-1"}
	nodes := make([]*mnode, 3)
	startNode := func(i int, cache string) {
		m := &mnode{ns: nw.prefix + "n" + strconv.Itoa(i), ip: ips[i], cache: cache}
		args := append([]string{self, "serve", "--listen", m.ip + ":8815", "--metrics-listen", m.ip + ":9100",
			"--cache-dir", cache, "--remote-cache", "s3://loaderd-test/job", "--prefetch-epochs", "1",
			"--tls-cert", pki.serverCert, "--tls-key", pki.serverKey, "--tls-client-ca", pki.ca}, common...)
		m.p = start(t, m.ns, nodeEnv, args...)
		waitTCP(t, m.ip+":8815", m.p)
		// The listeners open first; /metrics answers once the node serves.
		deadline := time.Now().Add(90 * time.Second)
		for {
			resp, err := http.Get(m.metrics())
			if err == nil {
				resp.Body.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d: no /metrics within 90 s:\n%s", i, m.p.out.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		nodes[i] = m
	}
	for i := range 3 {
		nw.host("n"+strconv.Itoa(i), 11+i)
		startNode(i, t.TempDir())
	}

	// The reference: one loaderd, alone, no tier, in this process.
	ref := testServeFlags(t, data)
	ref.pipeline = pipeline
	ref.shardSize, _ = strconv.Atoi(shard)
	refAddr, _ := startServe(t, ref)
	ctx := context.Background()
	want := map[[2]int][]string{} // (epoch, rank) → batch digests
	for e := range 3 {
		for r := range world {
			d, _, err := rankDigests(ctx, refAddr, nil, req(e, r), 0)
			if err != nil {
				t.Fatal(err)
			}
			want[[2]int{e, r}] = d
		}
	}

	// stream runs every rank of epoch e on its node (2r/2), concurrently,
	// and checks each rank's bytes against the reference.
	stream := func(what string, e int) []time.Duration {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, world)
		firsts := make([]time.Duration, world)
		for r := range world {
			wg.Go(func() {
				got, first, err := rankDigests(ctx, nodes[r/2].flight(), tlsCfg, req(e, r), 0)
				firsts[r] = first
				if err == nil && strings.Join(got, ",") != strings.Join(want[[2]int{e, r}], ",") {
					err = fmt.Errorf("rank %d of epoch %d: bytes differ from the single-node run", r, e)
				}
				errs[r] = err
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		return firsts
	}
	computed := func(kind string) float64 {
		total := 0.0
		for _, m := range nodes {
			resp := scrapeKind(t, m.metrics(), "loaderd_rows_computed_total", kind)
			total += resp
		}
		return total
	}
	waitSum := func(what string, f func() float64, want float64) {
		t.Helper()
		deadline := time.Now().Add(120 * time.Second)
		for f() < want {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %v < %v", what, f(), want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Job 1, epoch 0: each node computes its two ranks' rows, and
	// prefetches epoch 1's rows of the same ranks.
	t1 := time.Now()
	cold := stream("job 1, epoch 0", 0)
	t.Logf("job 1, epoch 0 (cold, computed by the nodes): %v; time to first batch per rank %v", time.Since(t1), cold)
	n = bound
	if got := computed("stream"); got != float64(n) {
		t.Errorf("rows computed by the streams of epoch 0 across the nodes: %v; want %d, each row once", got, n)
	}
	// Each node prefetches its own ranks' third of epoch 1.
	for i, m := range nodes {
		waitSum(fmt.Sprintf("node %d's prefetch of epoch 1", i), func() float64 {
			return scrapeKind(t, m.metrics(), "loaderd_rows_computed_total", "prefetch")
		}, float64(n/3))
	}
	if got := computed("stream") + computed("prefetch"); got != float64(2*n) {
		t.Errorf("rows computed across the nodes for epochs 0 and 1: %v; want %d (the node-aware bound: N per epoch)", got, 2*n)
	}
	for i, m := range nodes {
		t.Logf("node %d computed %v rows (streams) + %v (prefetch)", i, scrapeKind(t, m.metrics(), "loaderd_rows_computed_total", "stream"), scrapeKind(t, m.metrics(), "loaderd_rows_computed_total", "prefetch"))
	}
	stream("job 1, epoch 1", 1)
	if got := computed("stream"); got != float64(n) {
		t.Errorf("epoch 1 computed %v rows for its streams; want none (prefetched)", got-float64(n))
		for i, m := range nodes {
			t.Logf("node %d log:\n%s", i, m.p.out.String())
		}
	}
	for i, m := range nodes {
		waitSum(fmt.Sprintf("node %d's prefetch of epoch 2", i), func() float64 {
			return scrapeKind(t, m.metrics(), "loaderd_rows_computed_total", "prefetch")
		}, float64(2*n/3))
	}

	// Node 2 is killed in the middle of epoch 2: ranks 4 and 5 have read 2
	// of their 4 batches. They resume on node 0 with start_batch 2.
	const k = 2
	for _, r := range []int{4, 5} {
		got, _, err := rankDigests(ctx, nodes[2].flight(), tlsCfg, req(2, r), k)
		if err != nil || len(got) != k {
			t.Fatalf("rank %d before the kill: %d batches, %v", r, len(got), err)
		}
	}
	nodes[2].p.stop(syscall.SIGKILL)
	for _, r := range []int{4, 5} {
		got, _, err := rankDigests(ctx, nodes[0].flight(), tlsCfg, func() service.Request { q := req(2, r); q.StartBatch = k; return q }(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if w := want[[2]int{2, r}][k:]; strings.Join(got, ",") != strings.Join(w, ",") {
			t.Errorf("rank %d resumed on node 0 at batch %d: bytes differ from the single-node run", r, k)
		}
	}
	t.Logf("after the resume on node 0: node 0 fetched %v rows from the tier, computed %v for streams",
		scrape(t, nodes[0].metrics(), "loaderd_rows_fetched_total"), scrapeKind(t, nodes[0].metrics(), "loaderd_rows_computed_total", "stream"))

	// Job 2 on the same dataset: node 2 restarted on the cache its kill
	// left, node 1 replaced by a machine with an empty cache. It computes
	// nothing: node 0 and node 2 have their rows on disk, node 1 reads its
	// from the parts the old node 1 uploaded.
	// Node 0 now serves ranks 4 and 5 too: it prefetches epoch 3 for them
	// (from the tier, where node 2 may have put some before it died, or
	// computed). Let it finish before job 2 counts.
	activity := func() float64 {
		return scrapeKind(t, nodes[0].metrics(), "loaderd_rows_computed_total", "prefetch") + scrape(t, nodes[0].metrics(), "loaderd_rows_fetched_total")
	}
	for last, quiet, deadline := -1.0, 0, time.Now().Add(120*time.Second); quiet < 4; {
		if time.Now().After(deadline) {
			t.Fatal("node 0's prefetch did not settle within 120 s")
		}
		time.Sleep(250 * time.Millisecond)
		if a := activity(); a == last {
			quiet++
		} else {
			last, quiet = a, 0
		}
	}
	var uploaded float64
	for _, m := range nodes[:2] {
		uploaded += scrape(t, m.metrics(), "loaderd_tier_uploaded_bytes_total")
	}
	nodes[1].p.stop(syscall.SIGTERM) // drains, then finishes its uploads
	startNode(1, t.TempDir())
	startNode(2, nodes[2].cache)
	before := computed("stream") + computed("prefetch")
	t0 := time.Now()
	first, ttfb, err := rankDigests(ctx, nodes[1].flight(), tlsCfg, req(0, 2), 1)
	if err != nil || first[0] != want[[2]int{0, 2}][0] {
		t.Fatalf("job 2, rank 2's first batch from the tier: %v", err)
	}
	t.Logf("time to first batch on a node with an empty cache, rows from the tier: %v (call %v)", ttfb, time.Since(t0))
	if _, ttfb2, err := rankDigests(ctx, nodes[1].flight(), tlsCfg, req(1, 3), 1); err == nil {
		t.Logf("and for its other rank, of the next epoch, once the node has listed the tier: %v", ttfb2)
	}
	stream("job 2, epoch 0", 0)
	stream("job 2, epoch 1", 1)
	if got := computed("stream") + computed("prefetch"); got != before {
		t.Errorf("job 2 computed %v rows across the nodes; want none", got-before)
		for i, m := range nodes {
			t.Logf("node %d: computed %v (streams) + %v (prefetch), fetched %v, resumed %v", i,
				scrapeKind(t, m.metrics(), "loaderd_rows_computed_total", "stream"), scrapeKind(t, m.metrics(), "loaderd_rows_computed_total", "prefetch"),
				scrape(t, m.metrics(), "loaderd_rows_fetched_total"), scrape(t, m.metrics(), "loaderd_rows_resumed_total"))
			t.Logf("node %d log:\n%s", i, m.p.out.String())
		}
	}
	fetched := scrape(t, nodes[1].metrics(), "loaderd_rows_fetched_total")
	if fetched < float64(2*n/3) {
		t.Errorf("the new node 1 fetched %v rows from the tier; want at least its ranks' %d of epochs 0 and 1", fetched, 2*n/3)
	}
	resumed := scrape(t, nodes[2].metrics(), "loaderd_rows_resumed_total")
	if resumed < float64(2*n/3) {
		t.Errorf("restarted node 2 resumed %v rows from its partial shards; want at least %d", resumed, 2*n/3)
	}
	t.Logf("job 2: node 1 fetched %v rows (%v bytes) from the tier; node 2 resumed %v rows from disk; %v bytes uploaded to the store by nodes 0 and 1 of job 1",
		fetched, scrape(t, nodes[1].metrics(), "loaderd_tier_downloaded_bytes_total"), resumed, uploaded)

	// Credentials stay out of every log and every metric.
	for i, m := range nodes {
		resp, err := http.Get(m.metrics())
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		resp.Body.Close()
		if strings.Contains(b.String(), secret) || strings.Contains(m.p.out.String(), secret) {
			t.Errorf("node %d shows the secret key in its log or metrics", i)
		}
		if strings.Contains(m.p.out.String(), "UNPROTECTED") {
			t.Errorf("node %d warned although it requires client certificates", i)
		}
	}
}

// envOr is $name, or def when it is empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// scrapeKind is scrape of the sample with label kind="kind".
func scrapeKind(t *testing.T, url, name, kind string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	prefix := name + `{kind="` + kind + `"} `
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
