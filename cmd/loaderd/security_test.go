package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExposure(t *testing.T) {
	tcp := func(s string) net.Addr {
		a, err := net.ResolveTCPAddr("tcp", s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		name                  string
		addr                  net.Addr
		token, useTLS, mutual bool
		want                  []string // a word of each warning, in order
	}{
		{name: "loopback", addr: tcp("127.0.0.1:8815")},
		{name: "loopback v6", addr: tcp("[::1]:8815")},
		{name: "unix socket", addr: &net.UnixAddr{Name: "/run/loaderd.sock", Net: "unix"}},
		{name: "every interface, nothing", addr: tcp("0.0.0.0:8815"), want: []string{"UNPROTECTED: serving on 0.0.0.0:8815 (every interface) over plain gRPC"}},
		{name: "LAN address, TLS only", addr: tcp("10.1.2.3:8815"), useTLS: true, want: []string{"UNPROTECTED: serving on 10.1.2.3:8815 over TLS without client certificates"}},
		{name: "token without TLS", addr: tcp("10.1.2.3:8815"), token: true, want: []string{"INSECURE"}},
		{name: "token and TLS", addr: tcp("10.1.2.3:8815"), token: true, useTLS: true},
		{name: "mutual TLS", addr: tcp("[::]:8815"), useTLS: true, mutual: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := exposure(tc.addr, tc.token, tc.useTLS, tc.mutual)
			if len(got) != len(tc.want) {
				t.Fatalf("exposure = %q; want %d warnings", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q; want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

// startServe runs serve with f until the test ends and returns its
// address and its log.
func startServe(t *testing.T, f *serveFlags) (string, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, f, newLogger(logs, "info"), ready) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop within 20 s")
		}
	})
	select {
	case addr := <-ready:
		return addr, logs
	case err := <-done:
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	return "", nil
}

func testServeFlags(t *testing.T, data string) *serveFlags {
	f := &serveFlags{listen: "127.0.0.1:0", maxStreams: 8, drainTimeout: time.Second}
	f.data = datasetFlag{{Name: "d", Path: data}}
	f.pipeline, f.decoder, f.onError, f.logLevel = tinyPipeline, "auto", "substitute", "info"
	f.cacheDir, f.shardSize = t.TempDir(), 8
	return f
}

// TestServeWarnsWhenExposed: serve on every interface with no token says
// so at start; on loopback it says nothing.
func TestServeWarnsWhenExposed(t *testing.T) {
	data := smallData(t, 4, false)
	f := testServeFlags(t, data)
	f.listen = "0.0.0.0:0"
	_, logs := startServe(t, f)
	if l := logs.String(); !strings.Contains(l, "level=WARN msg=\"UNPROTECTED: serving on ") || !strings.Contains(l, "(every interface)") {
		t.Errorf("serve on 0.0.0.0 without a token logged no warning:\n%s", logs.String())
	}
	f = testServeFlags(t, data)
	_, logs = startServe(t, f)
	if strings.Contains(logs.String(), "UNPROTECTED") {
		t.Errorf("serve on loopback warned:\n%s", logs.String())
	}
}

// pki writes a CA, a server certificate for 127.0.0.1 and a client
// certificate signed by the CA, and a client certificate of another CA,
// as PEM files in dir.
type pki struct{ ca, serverCert, serverKey, clientCert, clientKey, rogueCert, rogueKey string }

func makePKI(t *testing.T, dir string, serverIPs ...string) pki {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) string {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name, "EC PRIVATE KEY", der)
	}
	serial := int64(1)
	newCA := func(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
		k := key()
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, k, der
	}
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	for _, ip := range serverIPs {
		ips = append(ips, net.ParseIP(ip))
	}
	leaf := func(ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		serial++
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	ca, caKey, caDER := newCA("loaderd test CA")
	var p pki
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	der, k := leaf(ca, caKey, "node-a", x509.ExtKeyUsageServerAuth)
	p.serverCert, p.serverKey = write("server.pem", "CERTIFICATE", der), writeKey("server.key", k)
	der, k = leaf(ca, caKey, "trainer-0", x509.ExtKeyUsageClientAuth)
	p.clientCert, p.clientKey = write("client.pem", "CERTIFICATE", der), writeKey("client.key", k)
	rogue, rogueKey, _ := newCA("someone else")
	der, k = leaf(rogue, rogueKey, "intruder", x509.ExtKeyUsageClientAuth)
	p.rogueCert, p.rogueKey = write("rogue.pem", "CERTIFICATE", der), writeKey("rogue.key", k)
	return p
}

// TestMutualTLS: with --tls-client-ca, a client without a certificate,
// or with one of another CA, is refused; one with a certificate of the CA
// streams. No warning is logged on a non-loopback address then.
func TestMutualTLS(t *testing.T) {
	data := smallData(t, 6, false)
	p := makePKI(t, t.TempDir())
	f := testServeFlags(t, data)
	f.tlsCert, f.tlsKey, f.tlsClientCA = p.serverCert, p.serverKey, p.ca
	addr, logs := startServe(t, f)
	fetchArgs := []string{"fetch", "--addr", addr, "--dataset", "d", "--batch-size", "4", "--tls", "--tls-ca", p.ca}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{name: "no client certificate", code: exitFailure},
		{name: "certificate of another CA", args: []string{"--tls-cert", p.rogueCert, "--tls-key", p.rogueKey}, code: exitFailure},
		{name: "certificate of the CA", args: []string{"--tls-cert", p.clientCert, "--tls-key", p.clientKey}, code: exitOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCLI(t, append(slicesClone(fetchArgs), tc.args...)...)
			if code != tc.code {
				t.Fatalf("fetch: exit %d; want %d\n%s%s", code, tc.code, out, stderr)
			}
			if code == exitOK && !strings.Contains(out, " 6 images") {
				t.Errorf("fetch: %s; want 6 images", out)
			}
		})
	}
	if strings.Contains(logs.String(), "UNPROTECTED") {
		t.Errorf("mutual TLS warned:\n%s", logs.String())
	}
	code, _, stderr := runCLI(t, "serve", "--data", "d="+data, "--tls-client-ca", p.ca)
	if code != exitUsage || !strings.Contains(stderr, "give --tls-cert and --tls-key too") {
		t.Errorf("--tls-client-ca without --tls-cert: exit %d, %s", code, stderr)
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
