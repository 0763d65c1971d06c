package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/arrowio/flightsvc"
)

// connFlags are the flags of the commands that talk to a server: where it
// is and how to authenticate.
type connFlags struct {
	addr, tokenFile, tlsCA string
	tlsCert, tlsKey        string // a client certificate, for mutual TLS
	useTLS, insecure       bool
}

func (c *connFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.addr, "addr", defaultListen, "server address `HOST:PORT` (or grpc://HOST:PORT, grpc+tls://HOST:PORT, unix:///PATH.sock)")
	fs.StringVar(&c.tokenFile, "token-file", "", "`FILE` with the bearer token")
	fs.BoolVar(&c.useTLS, "tls", false, "connect with TLS (grpc+tls)")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "CA certificate `FILE` (PEM) to verify the server")
	fs.BoolVar(&c.insecure, "tls-insecure", false, "with --tls, do not verify the server certificate")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "with --tls, client certificate `FILE` (PEM) for a server that requires one (serve --tls-client-ca)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "with --tls, the client certificate's private key `FILE` (PEM)")
}

// served lists the datasets the server at c.addr serves, by name, when err
// is its NotFound (a dataset it does not serve): a message then says which
// it has, as the Python client's does. It is nil otherwise, or when the
// server cannot say.
func (c *connFlags) served(ctx context.Context, copts *flightsvc.ClientOptions, err error) []string {
	if status.Code(err) != codes.NotFound {
		return nil
	}
	cl, err := flightsvc.Dial(ctx, c.addr, copts)
	if err != nil {
		return nil
	}
	defer cl.Close()
	infos, err := cl.ListFlights(ctx)
	if err != nil {
		return nil
	}
	var names []string
	for _, info := range infos {
		var d struct {
			Dataset string `json:"dataset"`
		}
		if json.Unmarshal(info.GetFlightDescriptor().GetCmd(), &d) == nil && d.Dataset != "" {
			names = append(names, d.Dataset)
		}
	}
	return names
}

// options checks the flags and reads the files they name.
func (c *connFlags) options() (*flightsvc.ClientOptions, error) {
	if (c.insecure || c.tlsCA != "" || c.tlsCert != "") && !c.useTLS {
		return nil, usagef("--tls-ca, --tls-insecure and --tls-cert go with --tls")
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together: give both or neither")
	}
	copts := &flightsvc.ClientOptions{}
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return nil, usagef("--token-file: %v", err)
		}
		copts.Token = strings.TrimSpace(string(b))
	}
	if c.useTLS {
		cfg := &tls.Config{InsecureSkipVerify: c.insecure, MinVersion: tls.VersionTLS12}
		if c.tlsCA != "" {
			pem, err := os.ReadFile(c.tlsCA)
			if err != nil {
				return nil, usagef("--tls-ca: %v", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, usagef("--tls-ca %s: no PEM certificate in it", c.tlsCA)
			}
		}
		if c.tlsCert != "" {
			cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
			if err != nil {
				return nil, usagef("--tls-cert/--tls-key: %v", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		copts.TLS = cfg
	}
	return copts, nil
}
