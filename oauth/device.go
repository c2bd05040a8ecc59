package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// defaultInterval is RFC 8628 §3.2's polling interval when none is sent.
const defaultInterval = 5 * time.Second

// StartDevice calls the device authorization endpoint (RFC 8628 §3.1).
// ExpiresAt is computed from Provider.Now when the request was sent.
// UserCode and the verification URIs have been through Printable, and the
// URIs are http(s) URLs; an answer with anything else, a device code that
// is not visible ASCII or a repeated key is malformed. A
// confidential client authenticates as it does at the token endpoint
// (x/oauth2 itself sends only client_id). It is safe for concurrent use.
func (p *Provider) StartDevice(ctx context.Context, scopes []string, params Params) (*DeviceAuth, error) {
	if err := needEndpoint(opDevice, "device authorization", p.endpoints().DeviceAuthorization); err != nil {
		return nil, err
	}
	if err := checkParams(opDevice, params); err != nil {
		return nil, err
	}
	cfg, err := p.config(opDevice, scopes)
	if err != nil {
		return nil, err
	}
	a, err := p.assertionMaker(opDevice)
	if err != nil {
		return nil, err
	}
	pr, hc := newProbe(p.HTTP, p.now, "device authorization endpoint")
	pr.assertion = a
	defer pr.close()
	var opts []oauth2.AuthCodeOption
	for k, v := range params {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	if cfg.ClientSecret != "" {
		switch cfg.Endpoint.AuthStyle {
		case oauth2.AuthStyleInParams:
			opts = append(opts, oauth2.SetAuthURLParam("client_secret", cfg.ClientSecret))
		case oauth2.AuthStyleInHeader:
			id, secret := cfg.ClientID, cfg.ClientSecret
			pr.auth = func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
		}
	}
	secrets := []string{cfg.ClientSecret}
	res, err := cfg.DeviceAuth(withClient(ctx, hc), opts...)
	if err != nil {
		return nil, fromXOAuth2(opDevice, p.now(), pr, err, "device_code", secrets)
	}
	r := pr.last()
	if res.DeviceCode == "" || res.UserCode == "" || res.VerificationURI == "" {
		return nil, httpError(opDevice, p.now(), r.status, r.header, "", "", "", r.body, r.complete, "device_code", secrets)
	}
	// What a person is shown (and a browser may be made to open) must
	// be plain text and web links; the device code is sent back in a
	// form body.
	da := &DeviceAuth{
		DeviceCode:              NewSecret(res.DeviceCode),
		UserCode:                Printable(res.UserCode),
		VerificationURI:         Printable(res.VerificationURI),
		VerificationURIComplete: Printable(res.VerificationURIComplete),
		Interval:                defaultInterval,
	}
	switch k := duplicateKey(r.body, false); {
	case k != "":
		return nil, malformedAnswer(opDevice, r.status, "key "+k+" occurs more than once")
	case !isVisibleASCII(res.DeviceCode):
		return nil, malformedAnswer(opDevice, r.status, "device_code has characters other than visible ASCII")
	case strings.TrimSpace(da.UserCode) == "":
		return nil, malformedAnswer(opDevice, r.status, "user_code has no printable characters")
	case !isHTTPURL(da.VerificationURI):
		return nil, malformedAnswer(opDevice, r.status, "verification_uri is not an http(s) URL")
	case da.VerificationURIComplete != "" && !isHTTPURL(da.VerificationURIComplete):
		return nil, malformedAnswer(opDevice, r.status, "verification_uri_complete is not an http(s) URL")
	}
	if res.Interval > 0 {
		da.Interval = time.Duration(min(res.Interval, math.MaxInt32)) * time.Second
	}
	// x/oauth2 turned expires_in into a time.Now-based Expiry; read the
	// answer again for the lifetime and apply it to the injected clock.
	var raw map[string]any
	if json.Unmarshal(r.body, &raw) == nil {
		if in, ok := seconds(raw["expires_in"]); ok {
			da.ExpiresAt = r.sent.Add(in)
		}
	}
	return da, nil
}

// AwaitDevice polls the token endpoint at da.Interval (slow_down adds 5 s)
// until the user approves (token), denies (Denied), the code expires
// (Reauthorize) or ctx ends (Transient, wrapping ctx.Err()). The polling is
// x/oauth2's and waits on real time, in whole seconds (at least 1 s). It is
// safe for concurrent use.
func (p *Provider) AwaitDevice(ctx context.Context, da *DeviceAuth) (*Token, error) {
	if err := needEndpoint(opDevice, "token", p.endpoints().Token); err != nil {
		return nil, err
	}
	cfg, err := p.config(opDevice, nil)
	if err != nil {
		return nil, err
	}
	interval := int64((da.Interval + time.Second - 1) / time.Second) // round up
	if interval < 1 {
		interval = 1 // 0 would mean x/oauth2's default of 5 s
	}
	res := &oauth2.DeviceAuthResponse{DeviceCode: da.DeviceCode.Reveal(), Interval: interval}
	if !da.ExpiresAt.IsZero() {
		// x/oauth2 turns Expiry into a real-time deadline; translate
		// from the injected clock.
		res.Expiry = time.Now().Add(da.ExpiresAt.Sub(p.now()))
	}
	pr, hc, err := p.tokenProbe(opDevice)
	if err != nil {
		return nil, err
	}
	secrets := []string{cfg.ClientSecret, res.DeviceCode}
	tok, err := cfg.DeviceAccessToken(withClient(ctx, hc), res)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// Our deadline (the code's expiry), not the caller's.
			return nil, &Error{Op: opDevice, Code: "expired_token", Description: "the device code expired before the user approved", Class: Reauthorize}
		}
		return nil, tokenAnswerError(opDevice, p.now(), pr, err, secrets, "")
	}
	return p.finish(opDevice, pr, tok, "", nil)
}
