package daemon

// The HTTP client of one OAuth client at its provider: the daemon's, or,
// when the client presents a certificate (RFC 8705) or the provider's
// certificates come from a private CA, a copy of it with that TLS
// configuration.

import (
	"crypto/tls"
	"fmt"
	"net/http"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/oauth"
)

// clientHTTP returns the HTTP client for requests of client c to provider
// p: the daemon's own when neither has TLS settings, else a client with
// the same timeout and transport settings (and so no retries) that
// presents c's certificate and trusts p's CAs. Each such client has its
// own connection pool: connections made with one certificate are never
// reused for another client.
func (d *Daemon) clientHTTP(c config.Client, p config.Provider) (*http.Client, error) {
	if c.TLSCert == nil && p.CAs == nil {
		return d.hc, nil
	}
	var tr *http.Transport
	switch t := d.hc.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		// A transport tokend did not build (Options.HTTPClient): its TLS
		// settings cannot be changed from here.
		return nil, &oauth.Error{Op: "config", Class: oauth.Configuration,
			Description: fmt.Sprintf("provider %s: a client certificate or ca_file needs the daemon's own HTTP transport (got %T)", c.Provider, t)}
	}
	tc := tr.TLSClientConfig
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	} else {
		tc = tc.Clone()
	}
	if p.CAs != nil {
		tc.RootCAs = p.CAs
	}
	if c.TLSCert != nil {
		tc.Certificates = []tls.Certificate{*c.TLSCert}
	}
	tr.TLSClientConfig = tc
	hc := *d.hc
	hc.Transport = tr
	return &hc, nil
}
