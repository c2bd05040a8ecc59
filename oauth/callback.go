package oauth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ParseCallback checks a redirect's query (RFC 6749 §4.1.2) and returns the
// code and state. When iss is present it must equal wantIssuer (RFC 9207,
// against mix-up attacks; checked first, for error answers too), and when
// requireIss is true it must be present. With no wantIssuer (a provider
// configured by its endpoints alone) and requireIss false, iss is not
// checked: there is nothing to check it against. error=... becomes an
// *Error with Op "callback", classified like any provider error (Denied for access_denied,
// Transient for temporarily_unavailable and server_error, Configuration
// otherwise). A missing or repeated code or state is a Configuration error.
// The caller still has to match state against its pending authorizations.
func ParseCallback(q url.Values, wantIssuer string, requireIss bool) (code, state string, err error) {
	bad := func(format string, args ...any) error {
		return &Error{Op: opCallback, Class: Configuration, Err: fmt.Errorf(format, args...)}
	}
	iss, present := q["iss"]
	switch {
	case present && (wantIssuer != "" || requireIss) &&
		(len(iss) != 1 || wantIssuer == "" || strings.TrimSuffix(iss[0], "/") != strings.TrimSuffix(wantIssuer, "/")):
		return "", "", bad("%w: iss %q, want %q", errIssuerMismatch, clean(strings.Join(iss, ","), 200, nil), wantIssuer)
	case !present && requireIss:
		return "", "", bad("no iss parameter, and the provider promises one (RFC 9207)")
	}
	if codes, ok := q["error"]; ok {
		c := ""
		if len(codes) > 0 {
			c = codes[0]
		}
		e := httpError(opCallback, time.Time{}, 0, nil, c, q.Get("error_description"), q.Get("error_uri"), nil, true, "code", nil)
		if e.Code == "" {
			e.Err, e.Class = errors.New("empty error parameter"), Configuration
		}
		return "", "", e
	}
	one := func(name string) (string, error) {
		v := q[name]
		switch {
		case len(v) == 0 || v[0] == "":
			return "", bad("no %s parameter", name)
		case len(v) > 1:
			return "", bad("%d %s parameters", len(v), name)
		}
		return v[0], nil
	}
	if state, err = one("state"); err != nil {
		return "", "", err
	}
	if code, err = one("code"); err != nil {
		return "", "", err
	}
	return code, state, nil
}
