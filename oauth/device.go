package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/oauth2"
)

// defaultInterval is RFC 8628 §3.2's polling interval when none is sent.
const defaultInterval = 5 * time.Second

// StartDevice calls the device authorization endpoint (RFC 8628 §3.1).
// ExpiresAt is computed from Provider.Now when the request was sent. A
// confidential client authenticates as it does at the token endpoint
// (x/oauth2 itself sends only client_id). It is safe for concurrent use.
func (p *Provider) StartDevice(ctx context.Context, scopes []string, params Params) (*DeviceAuth, error) {
	if err := needEndpoint(opDevice, "device authorization", p.Endpoints.DeviceAuthorization); err != nil {
		return nil, err
	}
	if err := checkParams(opDevice, params); err != nil {
		return nil, err
	}
	cfg, err := p.config(opDevice, scopes)
	if err != nil {
		return nil, err
	}
	pr, hc := newProbe(p.HTTP, p.now)
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
	da := &DeviceAuth{
		DeviceCode:              NewSecret(res.DeviceCode),
		UserCode:                res.UserCode,
		VerificationURI:         res.VerificationURI,
		VerificationURIComplete: res.VerificationURIComplete,
		Interval:                defaultInterval,
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
	if err := needEndpoint(opDevice, "token", p.Endpoints.Token); err != nil {
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
	pr, hc := newProbe(p.HTTP, p.now)
	secrets := []string{cfg.ClientSecret, res.DeviceCode}
	tok, err := cfg.DeviceAccessToken(withClient(ctx, hc), res)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// Our deadline (the code's expiry), not the caller's.
			return nil, &Error{Op: opDevice, Code: "expired_token", Description: "the device code expired before the user approved", Class: Reauthorize}
		}
		return nil, fromXOAuth2(opDevice, p.now(), pr, err, "access_token", secrets)
	}
	return convert(tok, pr.last().sent, ""), nil
}
