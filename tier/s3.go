package tier

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3Backend keeps objects in a bucket of an S3-compatible store through
// minio-go. A put of more than 16 MiB is a multipart upload, which the
// store makes visible only when it is completed; an upload that fails is
// aborted.
type s3Backend struct {
	c        *minio.Client
	core     minio.Core
	bucket   string
	endpoint string // scheme://host, for messages
}

// openS3 connects to bucket at the endpoint of the AWS environment and
// checks that the bucket exists.
func openS3(ctx context.Context, bucket string) (*s3Backend, error) {
	endpoint := firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	env := "AWS_ENDPOINT_URL"
	if endpoint == "" {
		endpoint, env = "https://s3.amazonaws.com", ""
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("%w: %s: want http(s)://HOST[:PORT], no path and no credentials", ErrURL, env)
	}
	tr, err := minio.DefaultTransport(u.Scheme == "https")
	if err != nil {
		return nil, fmt.Errorf("tier: %w", err)
	}
	if bundle := os.Getenv("AWS_CA_BUNDLE"); bundle != "" && u.Scheme == "https" {
		pem, err := os.ReadFile(bundle)
		if err != nil {
			return nil, fmt.Errorf("tier: AWS_CA_BUNDLE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tier: AWS_CA_BUNDLE %s holds no PEM certificate", bundle)
		}
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	// The chain of the AWS SDKs: the environment, the shared credentials
	// file (AWS_PROFILE), then the instance's role (EC2, ECS, EKS).
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{},
	})
	c, err := minio.New(u.Host, &minio.Options{
		Creds:     creds,
		Secure:    u.Scheme == "https",
		Region:    firstEnv("AWS_REGION", "AWS_DEFAULT_REGION"),
		Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("tier: %s: %w", u.Host, err)
	}
	b := &s3Backend{c: c, core: minio.Core{Client: c}, bucket: bucket, endpoint: u.Scheme + "://" + u.Host}
	ok, err := c.BucketExists(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("tier: bucket %s at %s: %w", bucket, b.endpoint, b.clean(err))
	}
	if !ok {
		return nil, fmt.Errorf("tier: bucket %s does not exist at %s: create it (and its lifecycle rule, see the README)", bucket, b.endpoint)
	}
	return b, nil
}

// firstEnv returns the first of the variables that is set and not empty.
func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func (b *s3Backend) String() string { return "bucket " + b.bucket + " at " + b.endpoint }

func (b *s3Backend) put(ctx context.Context, name string, r io.Reader, size int64) error {
	_, err := b.c.PutObject(ctx, b.bucket, name, r, size, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return fmt.Errorf("tier: put %s: %w", name, b.clean(err))
	}
	return nil
}

func (b *s3Backend) get(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	var opts minio.GetObjectOptions
	var err error
	switch {
	case n == 0:
		return io.NopCloser(strings.NewReader("")), nil
	case n > 0:
		err = opts.SetRange(off, off+n-1)
	case off > 0:
		err = opts.SetRange(off, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("tier: get %s: %w", name, err)
	}
	rc, _, _, err := b.core.GetObject(ctx, b.bucket, name, opts)
	if err != nil {
		if minio.ToErrorResponse(err).Code == minio.NoSuchKey {
			return nil, fmt.Errorf("%w: %s", ErrMissing, name)
		}
		return nil, fmt.Errorf("tier: get %s: %w", name, b.clean(err))
	}
	return rc, nil
}

func (b *s3Backend) list(ctx context.Context, dir string) ([]object, error) {
	var out []object
	for oi := range b.c.ListObjectsIter(ctx, b.bucket, minio.ListObjectsOptions{Prefix: dir}) {
		if oi.Err != nil {
			return nil, fmt.Errorf("tier: list %s: %w", dir, b.clean(oi.Err))
		}
		rel := strings.TrimPrefix(oi.Key, dir)
		if rel == "" || strings.Contains(rel, "/") {
			continue // a "directory" below dir
		}
		out = append(out, object{name: rel, size: oi.Size})
	}
	return out, nil
}

// clean turns a minio error into one that says what the store answered
// and nothing of the request: no signature, header or credential.
func (b *s3Backend) clean(err error) error {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		msg := er.Code
		if er.Message != "" {
			msg += ": " + er.Message
		}
		if er.StatusCode != 0 {
			msg += " (HTTP " + http.StatusText(er.StatusCode) + ")"
		}
		return errors.New(msg)
	}
	return err
}
