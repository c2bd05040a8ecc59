package oauth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// hasEscape reports whether s holds anything Printable removes.
func hasEscape(s string) bool { return Printable(s) != s }

// TestErrorDescriptionPrintable: a provider's error_description and error
// code reach `tokend status` and the 503 a reader sees; C0, C1 and bidi
// overrides are removed.
func TestErrorDescriptionPrintable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		_, _ = w.Write([]byte(`{"error":"invalid_grant\u202e","error_description":"gone \u001b]0;pwned\u0007\u202eevil\u2066\u0085\u009b31m ok","error_uri":"https://x.example/\u202eerr"}`))
	}))
	defer srv.Close()
	_, err := newTestProvider(srv, AuthPost, newClock()).Refresh(context.Background(), NewSecret("rt-1"), nil, nil)
	var e *Error
	if !errors.As(err, &e) || e.Class != Reauthorize {
		t.Fatalf("err = %v", err)
	}
	if e.Code != "invalid_grant" || e.Description != "gone ]0;pwnedevil31m ok" || e.URI != "https://x.example/err" {
		t.Errorf("Code %q, Description %q, URI %q", e.Code, e.Description, e.URI)
	}
	if msg := err.Error(); hasEscape(msg) || msg != "oauth: refresh: invalid_grant: gone ]0;pwnedevil31m ok (HTTP 400)" {
		t.Errorf("message %q", msg)
	}
}

// TestErrorMessagePrintable: whatever an *Error holds, however it was
// built (the daemon builds some itself), its message and its log record
// are printable.
func TestErrorMessagePrintable(t *testing.T) {
	evil := "a\x1b[2J\u202eb\u0085\x00\xff"
	for _, e := range []*Error{
		{Op: "refresh", Err: errors.New("cause " + evil)},
		{Op: "refresh", Code: "invalid_grant", Description: "desc " + evil},
		{Op: "refresh", Description: "desc " + evil},
		{Op: "refresh" + evil, Code: "c" + evil, Description: "d" + evil, URI: "u" + evil},
	} {
		if msg := e.Error(); hasEscape(msg) || !strings.HasPrefix(msg, "oauth: ") || !strings.Contains(msg, "a[2Jb") {
			t.Errorf("message %q", msg)
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "err", e)
		if strings.Contains(buf.String(), `\u001b`) || strings.Contains(buf.String(), "\u202e") || strings.Contains(buf.String(), `\u202e`) {
			t.Errorf("log %s", buf.String())
		}
	}
}

// TestTLSErrorPrintable is the network attack on the terminal: a
// certificate (no valid one needed) whose names hold terminal escapes. Go's
// TLS error quotes them; the message must not.
func TestTLSErrorPrintable(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evil := "evil\x1b]0;pwned\x07\x1b[2J.example"
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: evil},
		DNSNames:              []string{evil, "x\r\nFake-Log-Line: yes"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
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
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("request reached a server with a wrong certificate")
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake fails, as it should
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	// Trusted, but for other names: the error lists the certificate's.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "tokend.test"}}}

	_, err1 := redirectProvider(hc, srv.URL).Refresh(context.Background(), NewSecret("rt-1"), nil, nil)
	_, err2 := Discover(context.Background(), hc, srv.URL)
	for _, err := range []error{err1, err2} {
		var e *Error
		if !errors.As(err, &e) || e.Class != Transient {
			t.Fatalf("err = %v", err)
		}
		// The attack reached the error text...
		if !strings.Contains(e.Err.Error(), "\x1b") {
			t.Fatalf("cause %q does not quote the certificate's names", e.Err)
		}
		// ...but not the message or the log.
		msg := err.Error()
		if hasEscape(msg) || !strings.Contains(msg, "evil]0;pwned[2J.example") {
			t.Errorf("message %q", msg)
		}
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "err", e)
		if strings.Contains(buf.String(), `\x1b`) || strings.Contains(buf.String(), `\u001b`) || strings.Count(buf.String(), "\n") != 1 {
			t.Errorf("log %q", buf.String())
		}
	}
}
