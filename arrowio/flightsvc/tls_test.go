package flightsvc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/service"
)

// selfSigned returns a server certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "loaderd test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	f := newFakeSource(t, 30, 16, 16)
	addr, _ := startServer(t, &Options{Source: f, AuthToken: "tok",
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}})
	req := service.Request{Dataset: "train", BatchSize: 8, WorldSize: 1}
	cl, err := Dial(testCtx(t), "grpc+tls://"+addr, &ClientOptions{Token: "tok", TLS: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := cl.Fetch(testCtx(t), req, nil)
	if err != nil || st.Rows != 30 {
		t.Fatalf("Fetch over TLS = %+v, %v; want 30 rows", st, err)
	}
	for _, tc := range []struct {
		name string
		opts *ClientOptions
	}{
		{name: "plain text client", opts: &ClientOptions{Token: "tok"}},
		{name: "untrusted certificate", opts: &ClientOptions{Token: "tok", TLS: &tls.Config{MinVersion: tls.VersionTLS12}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad, err := Dial(testCtx(t), addr, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer bad.Close()
			ctx, cancel := context.WithTimeout(testCtx(t), 5*time.Second)
			defer cancel()
			if _, err := bad.Fetch(ctx, req, nil); status.Code(err) != codes.Unavailable {
				t.Fatalf("Fetch = %v; want Unavailable", err)
			}
		})
	}
	waitReleased(t, f)
}

// fakeActions records the calls it gets.
