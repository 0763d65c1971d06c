package flightsvc

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/loaderd/loaderd/service"
)

// ErrBadTicket reports a ticket that was not issued by this server's key,
// was modified, or cannot be parsed. It wraps service.ErrInvalid.
var ErrBadTicket = fmt.Errorf("flightsvc: bad ticket: %w", service.ErrInvalid)

// ErrStaleTicket reports a ticket for a dataset that changed since it was
// issued. It wraps service.ErrStale.
var ErrStaleTicket = fmt.Errorf("flightsvc: ticket for an older dataset, call GetFlightInfo again: %w", service.ErrStale)

const (
	ticketVersion = 1
	keyLen        = 32
	macLen        = sha256.Size
	maxTicketLen  = 64 << 10
)

// ticketBody is what a ticket carries: the request and the dataset
// fingerprint it was planned against.
type ticketBody struct {
	Request     json.RawMessage `json:"request"`
	Fingerprint string          `json:"fingerprint"`
}

// LoadOrCreateKey reads the ticket key at path, creating the file with 32
// random bytes (mode 0600) if it does not exist, so that tickets survive
// restarts. A key file shorter than 32 bytes is an error.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createKey(path)
		if errors.Is(err, fs.ErrExist) { // lost a race with another process
			key, err = os.ReadFile(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("flightsvc: ticket key %s: %w", path, err)
	}
	if len(key) < keyLen {
		return nil, fmt.Errorf("flightsvc: ticket key %s: %d bytes, want at least %d", path, len(key), keyLen)
	}
	return key, nil
}

func createKey(path string) ([]byte, error) {
	key := make([]byte, keyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	return key, nil
}

// signTicket makes the opaque ticket for req planned against fingerprint:
// version byte, JSON body, HMAC-SHA256 of both.
func signTicket(key []byte, req service.Request, fingerprint string) ([]byte, error) {
	rj, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("flightsvc: ticket: %w", err)
	}
	body, err := json.Marshal(ticketBody{Request: rj, Fingerprint: fingerprint})
	if err != nil {
		return nil, fmt.Errorf("flightsvc: ticket: %w", err)
	}
	t := make([]byte, 0, 1+len(body)+macLen)
	t = append(t, ticketVersion)
	t = append(t, body...)
	m := hmac.New(sha256.New, key)
	m.Write(t)
	return m.Sum(t), nil
}

// openTicket checks the signature of t and returns the request and the
// fingerprint it carries. Every failure wraps ErrBadTicket.
func openTicket(key []byte, t []byte) (service.Request, string, error) {
	if len(t) < 1+macLen || len(t) > maxTicketLen {
		return service.Request{}, "", fmt.Errorf("%w: %d bytes", ErrBadTicket, len(t))
	}
	if t[0] != ticketVersion {
		return service.Request{}, "", fmt.Errorf("%w: version %d", ErrBadTicket, t[0])
	}
	signed, mac := t[:len(t)-macLen], t[len(t)-macLen:]
	m := hmac.New(sha256.New, key)
	m.Write(signed)
	if !hmac.Equal(m.Sum(nil), mac) {
		return service.Request{}, "", fmt.Errorf("%w: signature mismatch", ErrBadTicket)
	}
	var body ticketBody
	if err := json.Unmarshal(signed[1:], &body); err != nil {
		return service.Request{}, "", fmt.Errorf("%w: %s", ErrBadTicket, err.Error())
	}
	// Signed by us, but parse it as strictly as a descriptor anyway.
	req, err := ParseRequest(body.Request)
	if err != nil {
		return service.Request{}, "", fmt.Errorf("%w: %s", ErrBadTicket, err.Error())
	}
	return req, body.Fingerprint, nil
}
