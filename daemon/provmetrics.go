package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"

	"github.com/tokend/tokend/oauth"
)

// Endpoint labels of tokend_provider_requests_total.
const (
	EndpointToken        = "token"
	EndpointRevocation   = "revocation"
	EndpointDevice       = "device"
	EndpointDiscovery    = "discovery"
	EndpointRegistration = "registration"
	// EndpointOther is a request to none of a provider's known endpoints
	// (a redirect's target).
	EndpointOther = "other"
)

// countingHTTP returns base (the daemon's HTTP client, or a client's own:
// clientHTTP) with a transport that counts each request to provider by
// endpoint and outcome (Metrics.ObserveProviderRequest). endpoint names
// what every request is for; when it is "", each request's URL is matched
// against eps.
func (d *Daemon) countingHTTP(base *http.Client, provider, endpoint string, eps *oauth.Endpoints) *http.Client {
	c := *base
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &countingTransport{next: next, m: d.metrics, provider: provider, endpoint: endpoint, eps: eps}
	return &c
}

type countingTransport struct {
	next     http.RoundTripper
	m        Metrics
	provider string
	endpoint string
	eps      *oauth.Endpoints
}

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	t.m.ObserveProviderRequest(t.provider, t.endpointOf(r), requestOutcome(resp, err))
	return resp, err
}

func (t *countingTransport) endpointOf(r *http.Request) string {
	if t.endpoint != "" {
		return t.endpoint
	}
	if t.eps == nil {
		return EndpointOther
	}
	u := *r.URL
	u.RawQuery, u.Fragment = "", ""
	switch s := u.String(); s {
	case t.eps.Token:
		return EndpointToken
	case t.eps.Revocation:
		return EndpointRevocation
	case t.eps.DeviceAuthorization:
		return EndpointDevice
	case t.eps.Registration:
		return EndpointRegistration
	}
	return EndpointOther
}

// requestOutcome is the code label of tokend_provider_requests_total: the
// HTTP status, or for a request that got no answer a class from a small
// fixed set (never the error's text): timeout, canceled, refused, reset,
// dns, tls or error.
func requestOutcome(resp *http.Response, err error) string {
	if err == nil {
		return strconv.Itoa(resp.StatusCode)
	}
	var ne net.Error
	var dnsErr *net.DNSError
	var recErr tls.RecordHeaderError
	var verErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invErr x509.CertificateInvalidError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.As(err, &dnsErr):
		return "dns"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "reset"
	case errors.As(err, &recErr) || errors.As(err, &verErr) || errors.As(err, &authErr) ||
		errors.As(err, &hostErr) || errors.As(err, &invErr):
		return "tls"
	}
	return "error"
}
