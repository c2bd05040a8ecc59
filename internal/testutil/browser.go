package testutil

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Browser is a person's browser reduced to what the tests need: a cookie
// jar, redirects followed, and a page whose only form is made of hidden
// inputs and posts (oidc-provider's form_post page, the device confirmation
// page) submitted as if its script or its button ran. It never types.
type Browser struct {
	t      testing.TB
	client *http.Client
	// Visited lists every URL requested, redirects included, in order.
	Visited []string
}

// NewBrowser returns a browser with an empty cookie jar.
func NewBrowser(t testing.TB) *Browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &Browser{t: t}
	b.client = &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 20 {
				return fmt.Errorf("browser: too many redirects")
			}
			b.Visited = append(b.Visited, req.URL.String())
			return nil
		},
	}
	return b
}

// Page is where the browser stopped.
type Page struct {
	URL    *url.URL
	Status int
	Body   string
}

// Open loads rawURL, follows redirects and submits hidden-only forms until a
// page needs more (or none is left), and returns that page.
func (b *Browser) Open(rawURL string) Page {
	b.t.Helper()
	b.Visited = append(b.Visited, rawURL)
	resp, err := b.client.Get(rawURL)
	for step := 0; ; step++ {
		if err != nil {
			b.t.Fatalf("browser: %v (visited %v)", err, b.Visited)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		page := Page{URL: resp.Request.URL, Status: resp.StatusCode, Body: string(body)}
		action, form, ok := hiddenForm(page.Body)
		if !ok || step >= 10 || resp.StatusCode != http.StatusOK {
			return page
		}
		target, perr := page.URL.Parse(action)
		if perr != nil {
			b.t.Fatalf("browser: form action %q: %v", action, perr)
		}
		b.Visited = append(b.Visited, target.String())
		resp, err = b.client.PostForm(target.String(), form)
	}
}

// Find returns the last visited URL whose scheme://host is prefix's.
func (b *Browser) Find(hostPrefix string) string {
	for i := len(b.Visited) - 1; i >= 0; i-- {
		if strings.HasPrefix(b.Visited[i], hostPrefix) {
			return b.Visited[i]
		}
	}
	return ""
}

var (
	formRe  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputRe = regexp.MustCompile(`(?is)<input\b([^>]*?)/?>`)
	attrRe  = regexp.MustCompile(`(?is)\b([a-z_-]+)\s*=\s*"([^"]*)"`)
)

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(s, -1) {
		m[strings.ToLower(a[1])] = html.UnescapeString(a[2])
	}
	return m
}

// hiddenForm returns the action and fields of the page's form when the page
// has exactly one form, it posts, and all its inputs are hidden.
func hiddenForm(body string) (action string, fields url.Values, ok bool) {
	forms := formRe.FindAllStringSubmatch(body, -1)
	if len(forms) != 1 {
		return "", nil, false
	}
	fa := attrs(forms[0][1])
	if !strings.EqualFold(fa["method"], "post") {
		return "", nil, false
	}
	fields = url.Values{}
	for _, in := range inputRe.FindAllStringSubmatch(forms[0][2], -1) {
		ia := attrs(in[1])
		if !strings.EqualFold(ia["type"], "hidden") {
			return "", nil, false
		}
		fields.Add(ia["name"], ia["value"])
	}
	if len(fields) == 0 {
		return "", nil, false
	}
	return fa["action"], fields, true
}

// HTTPClient is the browser's client (its cookie jar included), for a test
// that must stop where the browser would go on, e.g. at a redirect.
func (b *Browser) HTTPClient() *http.Client { return b.client }
