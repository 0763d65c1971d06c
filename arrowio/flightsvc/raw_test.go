package flightsvc

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawCall sends one HTTP/2 request with the given headers (and an empty
// gRPC message) and returns the grpc-status the server answered with, ""
// if it reset the stream or closed the connection instead.
func rawCall(t *testing.T, addr string, headers [][2]string, body []byte) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, h := range headers {
		if err := enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]}); err != nil {
			t.Fatal(err)
		}
	}
	// The server may close the connection before reading it all.
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		return ""
	}
	if err := fr.WriteData(1, true, body); err != nil {
		return ""
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return "" // connection closed
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" && s != "200" {
				return "http " + s
			}
			for _, hf := range f.Fields {
				if hf.Name == "grpc-status" {
					return hf.Value
				}
			}
		case *http2.RSTStreamFrame, *http2.GoAwayFrame:
			return ""
		}
	}
}

// TestMalformedHeaders sends what a gRPC client would refuse to send; the
// server must answer (or reset) and keep serving.
func TestMalformedHeaders(t *testing.T) {
	f := newFakeSource(t, 10, 2, 2)
	addr, _ := startServer(t, &Options{Source: f, AuthToken: "tok"})
	base := func(extra ...[2]string) [][2]string {
		return append([][2]string{
			{":method", "POST"}, {":scheme", "http"}, {":authority", addr},
			{":path", "/arrow.flight.protocol.FlightService/ListFlights"},
			{"content-type", "application/grpc"}, {"te", "trailers"},
		}, extra...)
	}
	empty := []byte{0, 0, 0, 0, 0} // one empty gRPC message: Criteria{}
	tests := []struct {
		name    string
		headers [][2]string
		body    []byte
		want    []string // acceptable grpc-status values; "" = reset/closed
	}{
		{name: "good", headers: base([2]string{"authorization", "Bearer tok"}), body: empty, want: []string{"0"}},
		{name: "binary token", headers: base([2]string{"authorization", "Bearer \x00\xff\x01tok"}), body: empty, want: []string{"16", "13", ""}},
		{name: "binary scheme", headers: base([2]string{"authorization", "\xff\xfe tok"}), body: empty, want: []string{"16", "13", ""}},
		{name: "two headers", headers: base([2]string{"authorization", "Bearer tok"}, [2]string{"authorization", "Bearer tok"}), body: empty, want: []string{"16"}},
		{name: "huge header", headers: base([2]string{"authorization", "Bearer " + strings.Repeat("A", 60000)}), body: empty, want: []string{"16", ""}},
		{name: "garbage message", headers: base([2]string{"authorization", "Bearer tok"}), body: []byte{0, 0, 0, 0, 3, 0xff, 0xff, 0xff}, want: []string{"13", "0", ""}},
		{name: "truncated message", headers: base([2]string{"authorization", "Bearer tok"}), body: []byte{0, 0, 0, 1, 0}, want: []string{"13", ""}},
		{name: "unknown method", headers: [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", addr},
			{":path", "/arrow.flight.protocol.FlightService/Nope"}, {"content-type", "application/grpc"}, {"authorization", "Bearer tok"}}, body: empty, want: []string{"12"}},
		{name: "not grpc", headers: [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", addr}, {":path", "/"}}, want: []string{"http 415", "http 405", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := rawCall(t, addr, tc.headers, tc.body)
			ok := false
			for _, w := range tc.want {
				ok = ok || got == w
			}
			if !ok {
				t.Errorf("grpc-status %q; want one of %q", got, tc.want)
			}
			// Still serving.
			if got := rawCall(t, addr, base([2]string{"authorization", "Bearer tok"}), empty); got != "0" {
				t.Fatalf("after %s: good call got %q", tc.name, got)
			}
		})
	}
}
