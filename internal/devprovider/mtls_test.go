package devprovider

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// tlsPost posts a client_credentials request for id to path over TLS,
// presenting certs.
func tlsPost(t testing.TB, s *Server, path, id string, certs ...tls.Certificate) response {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool(), Certificates: certs}}}
	defer c.CloseIdleConnections()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}}
	req, _ := http.NewRequest(http.MethodPost, s.URL()+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r, err := tryDoWith(c, req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMTLSClientAuth(t *testing.T) {
	clk := newClock()
	logs := &logBuffer{}
	s := NewUnstarted(Options{Now: clk.Now, Logf: logs.Logf})
	if err := s.StartTLS("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") || !s.TLS() {
		t.Fatalf("URL %q TLS %v", s.URL(), s.TLS())
	}
	subject := pkix.Name{CommonName: "app", Organization: []string{"Example"}}
	cert, err := s.IssueClientCert(subject, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	otherSubject, _ := s.IssueClientCert(pkix.Name{CommonName: "intruder"}, time.Time{})
	expired, _ := s.IssueClientCert(subject, clk.Now().Add(-time.Minute))
	selfSigned, _ := s.SelfSignedClientCert("app", time.Time{})
	selfSigned2, _ := s.SelfSignedClientCert("app", time.Time{})
	selfExpired, _ := s.SelfSignedClientCert("app", clk.Now().Add(-time.Minute))
	s.AddClient(Client{ID: "tls-app", AuthMethod: AuthMethodTLS, TLSSubjectDN: "CN=app,O=Example"})
	s.AddClient(Client{ID: "self-app", AuthMethod: AuthMethodSelfSignedTLS, JWKS: CertJWKS(selfSigned)})
	s.AddClient(Client{ID: "self-expired", AuthMethod: AuthMethodSelfSignedTLS, JWKS: CertJWKS(selfExpired)})

	// Discovery advertises the aliases and the methods.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CertPool()}}}
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/.well-known/oauth-authorization-server", nil)
	md, err := tryDoWith(c, req)
	if err != nil {
		t.Fatal(err)
	}
	aliases, _ := md.body["mtls_endpoint_aliases"].(map[string]any)
	if aliases["token_endpoint"] != s.URL()+"/mtls/token" || aliases["revocation_endpoint"] != s.URL()+"/mtls/revoke" {
		t.Errorf("mtls_endpoint_aliases = %v", md.body["mtls_endpoint_aliases"])
	}
	if m := anyStrings(md.body["token_endpoint_auth_methods_supported"]); !slices.Contains(m, AuthMethodTLS) || !slices.Contains(m, AuthMethodSelfSignedTLS) {
		t.Errorf("token_endpoint_auth_methods_supported = %v", m)
	}

	wantOK(t, tlsPost(t, s, "/mtls/token", "tls-app", cert))
	wantOK(t, tlsPost(t, s, "/mtls/token", "self-app", selfSigned))
	for _, tc := range []struct {
		name, path, id string
		certs          []tls.Certificate
	}{
		{"no certificate", "/mtls/token", "tls-app", nil},
		{"not at the alias", "/token", "tls-app", []tls.Certificate{cert}},
		{"another subject", "/mtls/token", "tls-app", []tls.Certificate{otherSubject}},
		{"expired", "/mtls/token", "tls-app", []tls.Certificate{expired}},
		{"self-signed for a CA client", "/mtls/token", "tls-app", []tls.Certificate{selfSigned}},
		{"self-signed not pinned", "/mtls/token", "self-app", []tls.Certificate{selfSigned2}},
		{"self-signed not at the alias", "/token", "self-app", []tls.Certificate{selfSigned}},
		{"self-signed expired", "/mtls/token", "self-expired", []tls.Certificate{selfExpired}},
	} {
		wantErrorNamed(t, tc.name, tlsPost(t, s, tc.path, tc.id, tc.certs...), http.StatusUnauthorized, "invalid_client")
	}
	// A client's certificate from a CA the server does not trust.
	other := New(Options{})
	defer other.Close()
	foreign, _ := other.IssueClientCert(subject, time.Time{})
	wantErrorNamed(t, "foreign CA", tlsPost(t, s, "/mtls/token", "tls-app", foreign), http.StatusUnauthorized, "invalid_client")

	s.Close()
	for _, sec := range s.Issued() {
		if strings.Contains(logs.String(), sec) {
			t.Errorf("secret %.12s... in the log", sec)
		}
	}
	if !slices.ContainsFunc(s.Issued(), func(v string) bool { return strings.Contains(v, "PRIVATE KEY") }) {
		t.Errorf("certificate keys are not in Issued")
	}
}

func TestPlainServerHasNoMTLS(t *testing.T) {
	s := mustServer(t, Options{Clients: []Client{{ID: "tls-app", AuthMethod: AuthMethodTLS, TLSSubjectDN: "CN=app"}}})
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/.well-known/openid-configuration", nil)
	md := do(t, req)
	if _, ok := md.body["mtls_endpoint_aliases"]; ok {
		t.Errorf("mtls_endpoint_aliases advertised without TLS")
	}
	if m := anyStrings(md.body["token_endpoint_auth_methods_supported"]); slices.Contains(m, AuthMethodTLS) {
		t.Errorf("tls_client_auth advertised without TLS: %v", m)
	}
	wantError(t, post(t, s, "/mtls/token", auth{AuthMethodNone, "tls-app", ""}, url.Values{"grant_type": {"client_credentials"}}), http.StatusUnauthorized, "invalid_client")
}

func anyStrings(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
