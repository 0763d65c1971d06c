// Package tiertest starts a real S3 endpoint for tests: `rclone serve s3`
// on loopback, over a temporary directory. It is not an in-process fake:
// requests go over HTTP, signed, to a separate process.
//
// rclone is found as $LOADERD_RCLONE, on PATH, or where .ci/run builds
// it: $XDG_CACHE_HOME/loaderd-tools/rclone-VERSION/rclone (default
// ~/.cache/loaderd-tools/...), with
//
//	GOBIN=~/.cache/loaderd-tools/rclone-v1.76.0 go install github.com/rclone/rclone@v1.76.0
//
// Without it, a test that needs it fails when $CI is set and is skipped,
// with that command as the reason, otherwise.
package tiertest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// RcloneVersion is the rclone release the tests are run with.
const RcloneVersion = "v1.76.0"

// InstallHint is how to get rclone where Rclone finds it.
var InstallHint = "GOBIN=" + filepath.Join(toolsDir(), "rclone-"+RcloneVersion) +
	" go install github.com/rclone/rclone@" + RcloneVersion

// toolsDir is where .ci/run keeps the tools it builds.
func toolsDir() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "loaderd-tools")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "loaderd-tools")
	}
	return filepath.Join(os.TempDir(), "loaderd-tools")
}

// Rclone returns the path of the rclone binary, or an error saying how to
// get it.
func Rclone() (string, error) {
	if p := os.Getenv("LOADERD_RCLONE"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("LOADERD_RCLONE: %w", err)
		}
		return p, nil
	}
	cached := filepath.Join(toolsDir(), "rclone-"+RcloneVersion, "rclone")
	if _, err := os.Stat(cached); err == nil {
		return cached, nil
	}
	if p, err := exec.LookPath("rclone"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("rclone not found (LOADERD_RCLONE, %s, PATH): %s", cached, InstallHint)
}

// NeedRclone returns rclone's path, or ends the test: a failure under CI
// (which installs it), a skip naming the missing tool elsewhere.
func NeedRclone(t testing.TB) string {
	t.Helper()
	p, err := Rclone()
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but %v", err)
	}
	t.Skipf("needs an S3 server: %v", err)
	return ""
}

// An S3 is a running `rclone serve s3`.
type S3 struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string // an empty bucket, made for the test
	Dir       string // the directory served: Dir/Bucket holds the objects
	AccessKey string
	SecretKey string
}

// Env returns the AWS environment that points a client at s.
func (s *S3) Env() []string {
	return []string{
		"AWS_ENDPOINT_URL=" + s.Endpoint,
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=us-east-1",
	}
}

// Setenv sets Env in the test's environment (t.Setenv: not in parallel tests).
func (s *S3) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Env() {
		k, v, _ := bytes.Cut([]byte(kv), []byte("="))
		t.Setenv(string(k), string(v))
	}
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
}

// URL returns s3://BUCKET/prefix.
func (s *S3) URL(prefix string) string { return "s3://" + s.Bucket + "/" + prefix }

// StartS3 starts `rclone serve s3` on a free loopback port over a new
// temporary directory holding one empty bucket, waits until it answers,
// and stops it when the test ends. Credentials are random per server.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	bin := NeedRclone(t)
	s := &S3{
		Bucket:    "loaderd-test",
		Dir:       t.TempDir(),
		AccessKey: "AKIDTEST" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36),
		SecretKey: "secret-" + strconv.FormatInt(time.Now().UnixNano(), 36),
	}
	if err := os.Mkdir(filepath.Join(s.Dir, s.Bucket), 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Endpoint = "http://" + addr
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, Args(addr, s.AccessKey, s.SecretKey, s.Dir, t.TempDir())...)
	cmd.Env = append(os.Environ(), "RCLONE_CONFIG="+filepath.Join(s.Dir, "rclone.conf"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start rclone: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	// Wait until it answers HTTP (any status: an unsigned request is refused).
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("rclone serve s3 exited: %v\n%s", err, stderr.String())
		default:
		}
		resp, err := http.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("rclone serve s3 on %s did not answer within a minute\n%s", addr, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Args returns rclone's arguments (after the binary) to serve dir over S3
// at addr with one access key; cache is a directory for rclone's own
// write cache.
func Args(addr, accessKey, secretKey, dir, cache string) []string {
	return []string{"serve", "s3", "--addr", addr,
		"--auth-key", accessKey + "," + secretKey,
		"--vfs-cache-mode", "off", "--cache-dir", cache,
		"--log-level", "ERROR", dir}
}

// freePort returns a TCP port free on host at the time of the call.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
