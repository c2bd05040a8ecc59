package oauth

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// CheckEndpointURL applies tokend's rule for the URLs it sends secrets to:
// an absolute https URL, or http when the host is a loopback one
// (localhost, 127.0.0.0/8, ::1: local test providers). Anything else would
// send client secrets, passwords and tokens in clear text. It is the rule
// the configuration applies to the URLs written in it, and this package
// applies to the endpoints found by discovery or returned by registration,
// and to every endpoint before a request is sent to it.
//
// The error, nil when raw is acceptable, is meant to follow a field name
// and does not start with "oauth:": `"http://id.example.com" uses http to
// a non-loopback host: use https`.
func CheckEndpointURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if u.Scheme == "http" && !IsLoopbackHost(u.Hostname()) {
		return fmt.Errorf("%q uses http to a non-loopback host: use https", raw)
	}
	return nil
}

// IsLoopbackHost reports whether host (without port or brackets) is
// localhost, in any case, or a loopback IP address (127.0.0.0/8, ::1).
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// isHTTPURL reports whether s is an absolute http(s) URL with a host: what
// may be shown to a person as a link or opened in a browser.
func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.Opaque == ""
}

// safeURL is u for messages: without user information, query or fragment
// (which may carry secrets; an elided query shows as "?…"), with
// non-printable characters removed.
func safeURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	elided := c.RawQuery != "" || c.ForceQuery
	c.RawQuery, c.ForceQuery = "", false
	s := c.String()
	if elided {
		s += "?…"
	}
	return Printable(s)
}
