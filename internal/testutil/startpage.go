package testutil

import (
	"net/http"
	"strings"
	"testing"
)

// StartPageRedirect opens tokend's one-time start page at startURL with
// c's cookie jar and timeout, without following its redirect, and returns
// where it sends the browser: the authorization URL. The browser keeps
// the binding cookie the page sets. The test fails unless the answer is
// 302 to a URL that starts with prefix (the provider's).
func StartPageRedirect(t testing.TB, c *http.Client, startURL, prefix string) string {
	t.Helper()
	stop := *c
	stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := stop.Get(startURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authURL := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(authURL, prefix) {
		t.Fatalf("start page answered %d, Location %q; want a redirect to %s", resp.StatusCode, authURL, prefix)
	}
	return authURL
}
