package server

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzDPoPRequest feeds the body of POST /v1/tokens/{name}/dpop to its
// parser: it never panics, and what it accepts is a method token, an
// absolute http(s) URL of at most 8 KiB and a printable nonce.
func FuzzDPoPRequest(f *testing.F) {
	for _, s := range []string{
		`{"method":"GET","url":"https://api.example/x"}`,
		`{"method":"POST","url":"http://127.0.0.1:8080/a?b=c#d","nonce":"n-1"}`,
		`{"method":"GET","url":"https://user:pw@api.example/x"}`,
		`{"method":"G\u0000T","url":"https://h/"}`,
		`{"method":"GET","url":"https://h/","nonce":"\u202e"}`,
		`{"method":"GET","url":"//h/x"}`,
		`{"method":"GET","url":"https://h/x"} trailing`,
		`{"method":"GET","url":"https://h/x","Method":"POST"}`,
		`null`, `{}`, ``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := parseDPoPRequest(strings.NewReader(body))
		if err != nil {
			return
		}
		if !isHTTPToken(req.Method) || len(req.URL) > maxDPoPURL || !printableASCII(req.Nonce) {
			t.Fatalf("accepted %+v", req)
		}
		u, err := url.Parse(req.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			t.Fatalf("accepted url %q", req.URL)
		}
	})
}
