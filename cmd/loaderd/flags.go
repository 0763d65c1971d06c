package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"

	"github.com/loaderd/loaderd/augment"
	"github.com/loaderd/loaderd/loader"
)

// The defaults every command shares, so that what one command writes into
// the cache is what another reads (SPEC §6 keys epochs by seed and pipeline).
const (
	defaultPipeline = "imagenet-train"
	defaultSeed     = 0
	defaultListen   = "127.0.0.1:8815"
)

// keyFlags are the flags whose values make up a cached epoch's key (SPEC
// §6 and the pipeline's fingerprint): serve reads what precompute wrote
// only when all of them agree. The help of both says so from this list,
// and the start-up warning names those that differ (pipelineFlags.matching).
var keyFlags = []string{"--data", "--pipeline", "--seed", "--decoder", "--shard-size"}

// keyFlagsText writes keyFlags as a list in prose: "--data, ... and --shard-size".
func keyFlagsText() string {
	return strings.Join(keyFlags[:len(keyFlags)-1], ", ") + " and " + keyFlags[len(keyFlags)-1]
}

// A flagSet is one command's flags (GNU style: --name value or
// --name=value, before or after the arguments) and what its --help says.
type flagSet struct {
	*pflag.FlagSet
	synopsis string // after "Usage: loaderd NAME "
	notes    string // printed after the flags, before the exit status; may be ""
}

// newFlags makes the flag set of command name. Parse errors are returned,
// never printed: parse turns them into one-line usage errors.
func newFlags(name, synopsis string) *flagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false // in the order registered: the important ones first
	return &flagSet{FlagSet: fs, synopsis: synopsis}
}

// help is the command's --help text.
func (fs *flagSet) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: loaderd %s %s\n\n", fs.Name(), fs.synopsis)
	for _, c := range commands() {
		if c.name == fs.Name() {
			fmt.Fprintf(&b, "%s%s.\n\n", strings.ToUpper(c.summary[:1]), c.summary[1:])
		}
	}
	if u := fs.FlagUsagesWrapped(100); u != "" {
		fmt.Fprintf(&b, "Flags:\n%s\n", u)
	}
	if fs.notes != "" {
		fmt.Fprintf(&b, "%s\n\n", reflow(fs.notes, 80))
	}
	fmt.Fprintf(&b, "%s\n", exitStatusHelp)
	return b.String()
}

// count writes n with its noun, singular for one: "1 client", "2 batches".
func count[N int | int64](n N, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// reflow fills each paragraph of text (paragraphs are separated by a blank
// line) into lines of at most width characters, so that notes built from
// pieces read as one text. A no-break space (U+00A0) keeps a number with its
// unit; it is printed as a space.
func reflow(text string, width int) string {
	var paras []string
	for p := range strings.SplitSeq(strings.TrimSpace(text), "\n\n") {
		var b strings.Builder
		n := 0
		words := strings.FieldsFunc(p, func(r rune) bool { return r == ' ' || r == '\n' || r == '\t' })
		for _, w := range words {
			switch {
			case n == 0:
			case n+1+utf8.RuneCountInString(w) > width:
				b.WriteByte('\n')
				n = 0
			default:
				b.WriteByte(' ')
				n++
			}
			b.WriteString(w)
			n += utf8.RuneCountInString(w)
		}
		paras = append(paras, b.String())
	}
	return strings.ReplaceAll(strings.Join(paras, "\n\n"), "\u00a0", " ")
}

// parse parses args (flags anywhere, "--" ends them), turning --help into
// a helpRequest and a flag error into a one-line usage error; it refuses
// positional arguments beyond the want.
func parse(fs *flagSet, args []string, positional int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return &helpRequest{text: fs.help()}
		}
		return &usageError{cmd: fs.Name(), msg: flagError(fs, err)}
	}
	if fs.NArg() <= positional {
		return nil
	}
	stray := fs.Arg(positional)
	if b := boolBefore(fs, args, stray); b != "" {
		return &usageError{cmd: fs.Name(), msg: fmt.Sprintf("unexpected argument %q: a true/false flag takes its value after '=': --%s=%s", stray, b, stray)}
	}
	if positional == 0 {
		return &usageError{cmd: fs.Name(), msg: fmt.Sprintf("unexpected argument %q: `loaderd %s` takes flags only", stray, fs.Name())}
	}
	return &usageError{cmd: fs.Name(), msg: fmt.Sprintf("unexpected argument %q: `loaderd %s` takes %s", stray, fs.Name(), fs.synopsis)}
}

// boolBefore returns the name of the boolean flag written just before the
// stray argument v ("--shuffle false"), or "".
func boolBefore(fs *flagSet, args []string, v string) string {
	if v != "true" && v != "false" {
		return ""
	}
	for i := 1; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i-1], "--")
		if f := fs.Lookup(name); ok && args[i] == v && f != nil && f.Value.Type() == "bool" {
			return name
		}
	}
	return ""
}

// flagError words a pflag error as the problem and its fix.
func flagError(fs *flagSet, err error) string {
	var (
		notExist *pflag.NotExistError
		noValue  *pflag.ValueRequiredError
		invalid  *pflag.InvalidValueError
		syntax   *pflag.InvalidSyntaxError
	)
	switch {
	case errors.As(err, &notExist):
		if shorts := notExist.GetSpecifiedShortnames(); shorts != "" {
			if fs.Lookup(shorts) != nil {
				return fmt.Sprintf("unknown flag -%s: long flags take two dashes: --%s", shorts, shorts)
			}
			return fmt.Sprintf("unknown flag -%s", shorts)
		}
		name := notExist.GetSpecifiedName()
		var names []string
		fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
		if near := closest(name, names); near != "" {
			return fmt.Sprintf("unknown flag --%s; did you mean --%s?", name, near)
		}
		return fmt.Sprintf("unknown flag --%s", name)
	case errors.As(err, &noValue):
		f := noValue.GetFlag()
		ph, _ := pflag.UnquoteUsage(f)
		return fmt.Sprintf("--%s needs a value: --%s %s", f.Name, f.Name, strings.ToUpper(ph))
	case errors.As(err, &invalid):
		f := invalid.GetFlag()
		return fmt.Sprintf("--%s %q: %s", f.Name, invalid.GetValue(), wantValue(f, invalid.Unwrap()))
	case errors.As(err, &syntax):
		return fmt.Sprintf("bad flag syntax %q: write --name value or --name=value", syntax.GetSpecifiedFlag())
	}
	return err.Error()
}

// wantValue says what flag f accepts, for a value it refused with cause.
func wantValue(f *pflag.Flag, cause error) string {
	switch f.Value.Type() {
	case "int", "int64":
		return "want a whole number, e.g. --" + f.Name + " 4"
	case "uint", "uint64":
		return "want a whole number ≥ 0, e.g. --" + f.Name + " 7"
	case "float64":
		return "want a number"
	case "bool":
		return "want true or false (--" + f.Name + "=false)"
	case "duration":
		return "want a duration such as 30s or 2m"
	}
	return cause.Error() // loaderd's own flag types word their errors themselves
}

// closest returns the candidate nearest to s by edit distance when it is
// near enough to be a typo (at most 2 edits, fewer for short names), or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		d := editDistance(s, c)
		if d < bestD && d <= max(1, len(c)/3) {
			best, bestD = c, d
		}
	}
	if best == "" {
		for _, c := range candidates { // an unambiguous prefix: --cache-bud
			if len(s) >= 3 && strings.HasPrefix(c, s) {
				if best != "" {
					return ""
				}
				best = c
			}
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b
// in bytes: insertions, deletions, substitutions and swaps of neighbours
// ("sevre" is one edit from "serve").
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// datasetFlag collects repeated --data NAME=PATH values.
type datasetFlag []loader.DatasetSpec

func (d *datasetFlag) String() string {
	var parts []string
	for _, s := range *d {
		parts = append(parts, s.Name+"="+s.Path)
	}
	return strings.Join(parts, ",")
}

func (d *datasetFlag) Set(v string) error {
	name, path, ok := strings.Cut(v, "=")
	if !ok || name == "" || path == "" {
		return fmt.Errorf("want NAME=PATH, e.g. --data train=/data/imagenet/train")
	}
	if slices.ContainsFunc(*d, func(s loader.DatasetSpec) bool { return s.Name == name }) {
		return fmt.Errorf("dataset %q given twice; give each --data a different NAME", name)
	}
	*d = append(*d, loader.DatasetSpec{Name: name, Path: path})
	return nil
}

func (d *datasetFlag) Type() string { return "NAME=PATH" }

// sizeNote ends the help of the commands that take a size: the units are
// powers of 1024, whatever the suffix says (parseBytes).
const sizeNote = "Sizes are in binary units, with or without B or iB: 700M, 700MB and 700MiB " +
	"all mean 700\u00a0MiB (700×2^20 bytes), 2T and 2TB mean 2\u00a0TiB. A size needs its unit " +
	"(K, M, G, T, P, or B for bytes: 512B), except 0."

// byteSize is a flag holding a byte count written with its unit, as 512B,
// 64K, 50G or 1.5T: K, M, G, T and P are powers of 1024 (sizeNote).
type byteSize int64

func (b *byteSize) String() string { return humanize.IBytes(uint64(*b)) }

func (b *byteSize) Set(v string) error {
	n, err := parseBytes(v)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b *byteSize) Type() string { return "size" }

// parseBytes reads a size: a number and its unit, B (bytes) or K, M, G, T,
// P (powers of 1024), each with or without B or iB after it; or 0. A bare
// number other than 0 is refused (bytes or gigabytes? give the unit), as
// is a size that is not a whole number of bytes once scaled (0.5K is 512
// bytes, 0.5B is refused).
func parseBytes(v string) (int64, error) {
	s := strings.ToUpper(strings.TrimSpace(v))
	suffix := "" // "B" or "IB" after the number or its multiple
	for _, x := range []string{"IB", "B"} {
		if t, ok := strings.CutSuffix(s, x); ok {
			s, suffix = strings.TrimSpace(t), x
			break
		}
	}
	mult := int64(1)
	if s != "" {
		if i := strings.IndexByte("KMGTP", s[len(s)-1]); i >= 0 {
			mult = int64(1) << (10 * (i + 1))
			s = strings.TrimSpace(s[:len(s)-1])
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f*float64(mult) > 1<<62 || (suffix == "IB" && mult == 1) {
		return 0, fmt.Errorf("bad size %q: want a byte count such as 500M, 50G or 2T (binary units: G = GiB)", v)
	}
	n := f * float64(mult)
	switch {
	case n == 0:
		return 0, nil
	case mult == 1 && suffix == "":
		return 0, fmt.Errorf("give a unit: %[1]sG (GiB), %[1]sM (MiB) or %[1]sK (KiB); B for bytes (512B)", s)
	case n < 1:
		return 0, fmt.Errorf("less than one byte: want 0 or a size of 1B or more")
	case mult == 1 && n != math.Trunc(n):
		return 0, fmt.Errorf("not a whole number of bytes: give %.0fB, or a larger unit (K, M, G)", math.Floor(n))
	}
	return int64(n), nil
}

// parseEpochs reads "0-9", "0,2,5" or a mix ("0-3,7"): sorted, unique.
func parseEpochs(v string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("bad epoch %q in %q: want a list like 0-9 or 0,2,5", part, v)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("bad epoch range %q in %q: want FIRST-LAST with FIRST ≤ LAST", part, v)
			}
		}
		if b-a > 1<<20 || b >= 1<<31 {
			return nil, fmt.Errorf("epoch range %q is too large (at most 1048576 epochs below 2^31)", part)
		}
		for e := a; e <= b; e++ {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// checkAddr refuses a --listen style value that is not HOST:PORT.
func checkAddr(flagName, v string) error {
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		var p int
		p, err = strconv.Atoi(port)
		if err == nil && (p < 0 || p > 65535) {
			err = errors.New("port out of range")
		}
	}
	if err != nil {
		return usagef("--%s %q: want HOST:PORT, e.g. 127.0.0.1:8815, :8815 (every interface) or 127.0.0.1:0 (any free port)", flagName, v)
	}
	return nil
}

// unixPath returns the socket path of a unix:///PATH (or grpc+unix://)
// address.
func unixPath(addr string) (string, bool) {
	for _, scheme := range []string{"unix://", "grpc+unix://"} {
		if p, ok := strings.CutPrefix(addr, scheme); ok {
			return p, true
		}
	}
	return "", false
}

// checkListen checks a --listen value: HOST:PORT or unix:///PATH.
func checkListen(flagName, v string) error {
	if p, ok := unixPath(v); ok {
		if !filepath.IsAbs(p) || strings.HasSuffix(p, "/") {
			return usagef("--%s %q: want unix:///absolute/path/loaderd.sock", flagName, v)
		}
		return nil
	}
	return checkAddr(flagName, v)
}

// listenUnix listens on a Unix-domain socket at path. A socket file left by
// a process that died is replaced; one a live server answers on is busy. A
// missing directory is created (as a service manager's runtime directory
// would be): mode 0755 less the umask, or, with gid ≥ 0, the socket's own
// directory 2750 and that group's, so that its members reach the socket.
func listenUnix(flagName, path string, gid int) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, usagef("--%s unix://%s: a file that is not a socket is in the way", flagName, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("--%s unix://%s: a server listens there (another loaderd?); stop it or pick another path", flagName, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("--%s unix://%s: remove the stale socket: %w", flagName, path, err)
		}
	}
	dir := filepath.Dir(path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := makeSocketDir(dir, gid); err != nil {
			return nil, fmt.Errorf("--%s unix://%s: %w", flagName, path, err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("--%s unix://%s: %w", flagName, path, err)
	}
	return lis, nil
}

// makeSocketDir creates dir, the directory of a socket, and its missing
// parents; with gid ≥ 0, dir itself gets mode 2750 and group gid. Where
// this user may not create it, the error says how to have it made.
func makeSocketDir(dir string, gid int) error {
	err := os.MkdirAll(dir, 0o755)
	if err == nil && gid >= 0 {
		err = os.Chown(dir, -1, gid)
		if err == nil {
			err = os.Chmod(dir, 0o750|fs.ModeSetgid)
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		owner := "$USER"
		if u, uerr := user.Current(); uerr == nil {
			owner = u.Username
		}
		group := ""
		if gid >= 0 {
			group = fmt.Sprintf(" -g %d", gid)
		}
		return fmt.Errorf("cannot create its directory %s (%w): have it made once, as root: install -d -o %s%s -m 2750 %s; or listen in a directory of yours", dir, err, owner, group, dir)
	}
	return fmt.Errorf("create its directory %s: %w", dir, err)
}

// listen opens a listener for flag flagName, telling a wrong address
// (exit 2) from one that is busy (exit 1). addr is HOST:PORT, or
// unix:///PATH for a Unix-domain socket, whose directory is made with
// group gid (-1: none) when missing.
func listen(flagName, addr string, gid int) (net.Listener, error) {
	if p, ok := unixPath(addr); ok {
		return listenUnix(flagName, p, gid)
	}
	lis, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return lis, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("--%s %s: the address is in use (another loaderd?); stop that process or pick another port", flagName, addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL), isDNSError(err):
		return nil, usagef("--%s %s: no such local address: %v", flagName, addr, errors.Unwrap(err))
	}
	return nil, fmt.Errorf("--%s %s: %w", flagName, addr, err)
}

// groupID returns the id of group, a name or a number; a group this host
// lacks is a usage error saying how to make it.
func groupID(group string) (int, error) {
	g, err := user.LookupGroup(group)
	if err != nil {
		if g, err = user.LookupGroupId(group); err != nil {
			return 0, noGroup(group)
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("--cache-group %q: group id %q", group, g.Gid)
	}
	return gid, nil
}

// noGroup is the usage error of a --cache-group this host lacks.
func noGroup(group string) error {
	return usagef("--cache-group %q: no such group here; create it: groupadd %s, then usermod -aG %s USER for the server's user and each trainer's", group, group, group)
}

func isDNSError(err error) bool {
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// datasetError is a usage error for a dataset path that lists no samples
// (loader.ErrDataset): the path was wrong, the fix is on the command line.
func datasetError(prefix string, err error) error {
	msg := strings.TrimPrefix(err.Error(), loader.ErrDataset.Error()+": ")
	var me *loader.ManifestError
	if errors.As(err, &me) {
		msg = fmt.Sprintf("%s: %s (`loaderd scan %s` lists every entry)", me.Manifest, msg, me.Manifest)
	}
	return usagef("%s%s", prefix, msg)
}

// pipelineFlags are the flags shared by serve and precompute that decide
// what a sample's bytes are, plus where they are cached.
type pipelineFlags struct {
	data        datasetFlag
	pipeline    string
	decoder     string
	seed        uint64
	cacheDir    string
	cacheGroup  string
	cacheBudget byteSize
	workers     int
	shardSize   int
	onError     string
	logLevel    string
	requireGPU  bool
	remoteCache string // --remote-cache; registered by registerRemote
	// cacheDirFlag and cacheDirArg are the flag that set cacheDir and its
	// value, for messages: "" means --cache-dir itself (demo's is --dir).
	cacheDirFlag, cacheDirArg string
	// rescanInterval is serve's --rescan-interval (serveFlags.register).
	rescanInterval time.Duration
}

// cacheDirGiven returns the flag that set the cache directory and the
// value given, for messages that tell the user to change it.
func (p *pipelineFlags) cacheDirGiven() (flag, value string) {
	if p.cacheDirFlag == "" {
		return "--cache-dir", p.cacheDir
	}
	return p.cacheDirFlag, p.cacheDirArg
}

// registerRemote adds --remote-cache, the shared tier, to fs.
func (p *pipelineFlags) registerRemote(fs *pflag.FlagSet) {
	fs.StringVar(&p.remoteCache, "remote-cache", "", "shared cache tier `URL`: s3://BUCKET/PREFIX (endpoint and credentials from the AWS environment) or file:///PATH (a shared directory)")
}

func (p *pipelineFlags) register(fs *pflag.FlagSet) {
	fs.Var(&p.data, "data", "dataset `NAME=PATH` (repeatable); PATH an ImageFolder root (ROOT/<class>/<image>) or a manifest file")
	fs.StringVar(&p.pipeline, "pipeline", defaultPipeline, "augmentation `PIPELINE`: a preset (imagenet-train, imagenet-val) or pipeline text; `loaderd pipelines` lists the ops")
	fs.Uint64Var(&p.seed, "seed", defaultSeed, "random `SEED` of epoch order and augmentation")
	fs.StringVar(&p.decoder, "decoder", "auto", "`DECODER`s: auto (libjpeg-turbo for JPEG and libwebp for WebP when built in, else Go's), libjpeg-turbo (auto, failing if libjpeg-turbo is not built in), go (pure Go for every format)")
	fs.StringVar(&p.cacheDir, "cache-dir", defaultCacheDir(), "`DIRECTORY` of the epoch cache")
	fs.StringVar(&p.cacheGroup, "cache-group", "", "`GROUP` (name or id) given the cache, so that trainers in it read the shards in place (directories setgid 2750, files 0640; default: 0755/0644 less the umask)")
	fs.Var(&p.cacheBudget, "cache-budget", "bytes the cache may use on disk, in binary units: 200G = 200 GiB (0 = unlimited)")
	fs.IntVar(&p.workers, "workers", 0, "decode/augment workers (0 = one per CPU)")
	fs.IntVar(&p.shardSize, "shard-size", 1024, "samples per cache shard file")
	fs.StringVar(&p.onError, "on-error", loader.PolicySubstitute, "undecodable samples: `POLICY` substitute (the next decodable sample) or fail")
	fs.StringVar(&p.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn, error")
	fs.BoolVar(&p.requireGPU, "require-gpu", false, "fail instead of falling back when NVML or a GPU is missing")
}

// check validates the values flag parsing cannot.
func (p *pipelineFlags) check(needData bool) error {
	if needData && len(p.data) == 0 {
		return usagef("--data NAME=PATH is required, e.g. --data train=/data/imagenet/train")
	}
	if !slices.Contains(loader.Policies(), p.onError) {
		return usagef("--on-error %q: want %s", p.onError, strings.Join(loader.Policies(), " or "))
	}
	if !slices.Contains(augment.DecoderChoices(), p.decoder) {
		return usagef("--decoder %q: want one of %s", p.decoder, strings.Join(augment.DecoderChoices(), ", "))
	}
	if p.workers < 0 {
		return usagef("--workers %d: want 0 (one per CPU) or more", p.workers)
	}
	if p.shardSize < 1 || p.shardSize > 1<<20 {
		return usagef("--shard-size %d: want 1..1048576", p.shardSize)
	}
	if _, err := parseLevel(p.logLevel); err != nil {
		return err
	}
	if p.cacheGroup != "" {
		if _, err := groupID(p.cacheGroup); err != nil {
			return err
		}
	}
	return nil
}

func (p *pipelineFlags) parsePipeline() (*augment.Pipeline, error) {
	return parsePipeline(p.pipeline, p.decoder)
}

// parsePipeline parses --pipeline and --decoder; its errors point to
// `loaderd pipelines`.
func parsePipeline(text, decoder string) (*augment.Pipeline, error) {
	return parsePipelineArg("--pipeline", text, decoder)
}

// parsePipelineArg is parsePipeline for a pipeline given as label. The
// message names the op at fault, not the whole (possibly long) text.
func parsePipelineArg(label, text, decoder string) (*augment.Pipeline, error) {
	pl, err := augment.ParsePipeline(text, &augment.PipelineOptions{Decoder: decoder})
	var unknown *augment.UnknownOpError
	if errors.As(err, &unknown) {
		return nil, unknownOp(label, unknown.Name, !strings.ContainsAny(text, "(|"))
	}
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), augment.ErrPipeline.Error()+": ")
		if strings.Contains(msg, "decoder") {
			return nil, usagef("--decoder %q: %s", decoder, msg)
		}
		return nil, usagef("%s: %s (see `loaderd pipelines`)", label, msg)
	}
	return pl, nil
}

// unknownOp words a name in pipeline text that is neither an op nor a
// preset: the names it may be a typo or a shortening of ("imagenet": the
// presets imagenet-train and imagenet-val), else the ops, and the presets
// too when the name stood alone (bare), as a preset does.
func unknownOp(label, name string, bare bool) error {
	what := "op"
	if bare {
		what = "preset or op"
	}
	var near []string
	for _, c := range slices.Concat(augment.Presets(), augment.OpNames()) {
		d := editDistance(strings.ToLower(name), c)
		if d <= max(1, len(c)/4) || (len(name) >= 3 && (strings.HasPrefix(c, name) || strings.HasPrefix(name, c))) {
			near = append(near, c)
		}
	}
	kind := func(c string) string {
		if slices.Contains(augment.Presets(), c) {
			return "preset"
		}
		return "op"
	}
	switch {
	case len(near) == 0 && bare:
		return usagef("%s: unknown %s %q; the presets are %s, and `loaderd pipelines` lists the ops", label, what, name,
			strings.Join(augment.Presets(), " and "))
	case len(near) == 0:
		return usagef("%s: unknown %s %q; the ops are %s (`loaderd pipelines`)", label, what, name, strings.Join(augment.OpNames(), ", "))
	case len(near) == 1:
		return usagef("%s: unknown %s %q; did you mean the %s %s? (see `loaderd pipelines`)", label, what, name, kind(near[0]), near[0])
	}
	kinds := "one of"
	if kind(near[0]) == kind(near[len(near)-1]) {
		kinds = "the " + kind(near[0]) + "s"
	}
	return usagef("%s: unknown %s %q; did you mean %s %s or %s? (see `loaderd pipelines`)", label, what, name, kinds,
		strings.Join(near[:len(near)-1], ", "), near[len(near)-1])
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, usagef("--log-level %q: want debug, info, warn or error", s)
	}
	return l, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	l, _ := parseLevel(level)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// defaultCacheDir is $XDG_CACHE_HOME/loaderd, else ~/.cache/loaderd (SPEC §6).
func defaultCacheDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "loaderd")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "loaderd")
	}
	return filepath.Join(os.TempDir(), "loaderd-cache")
}
