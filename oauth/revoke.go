package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// Revoke revokes a token at the revocation endpoint (RFC 7009); hint is
// "refresh_token" or "access_token" (empty sends none). The client
// authenticates as at the token endpoint. Any 2xx is success (RFC 7009 §2.2
// says 200, also for a token that was already invalid); 503 is Transient
// with Retry-After. It is safe for concurrent use.
func (p *Provider) Revoke(ctx context.Context, token Secret, hint string) error {
	endpoint := p.endpoints().Revocation
	if err := needEndpoint(opRevoke, "revocation", endpoint); err != nil {
		return err
	}
	style, secret, err := p.clientAuth(opRevoke)
	if err != nil {
		return err
	}
	a, err := p.assertionMaker(opRevoke)
	if err != nil {
		return err
	}
	form := url.Values{"token": {token.Reveal()}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	if style == oauth2.AuthStyleInParams {
		form.Set("client_id", p.Client.ID)
		if secret != "" {
			form.Set("client_secret", secret)
		}
	}
	secrets := []string{token.Reveal(), secret}
	if a != nil {
		assertion, err := a.make(p.now())
		if err != nil {
			return err
		}
		form.Set("client_assertion_type", assertionTypeJWT)
		form.Set("client_assertion", assertion)
		secrets = append(secrets, assertion)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return &Error{Op: opRevoke, Class: Configuration, Err: err}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if style == oauth2.AuthStyleInHeader {
		// RFC 6749 §2.3.1: form-encode, then Basic; as x/oauth2 does.
		req.SetBasicAuth(url.QueryEscape(p.Client.ID), url.QueryEscape(secret))
	}
	now := p.now()
	resp, err := send(opRevoke, "revocation endpoint", p.HTTP, req)
	if err != nil {
		return err
	}
	if resp.status >= 200 && resp.status < 300 {
		return nil
	}
	var e struct {
		Code        string `json:"error"`
		Description string `json:"error_description"`
		URI         string `json:"error_uri"`
	}
	_ = json.Unmarshal(resp.body, &e) // absent or invalid: classified by status
	return httpError(opRevoke, now, resp.status, resp.header, e.Code, e.Description, e.URI, resp.body, resp.complete, "error", secrets)
}
