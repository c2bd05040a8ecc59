package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// What a program that uses a grant's token at a protected resource (the
// local proxy, the MCP bridge, any client) tells the daemon about the
// resource's answers: a token it refused, and scopes it asked for.

// RejectedRequest is the body of POST /v1/tokens/{name}/rejected: the
// access token a resource refused (401) and the WWW-Authenticate it came
// with.
type RejectedRequest struct {
	AccessToken string `json:"access_token"`
	Challenge   string `json:"www_authenticate,omitempty"`
}

// StepUpRequest is the body of POST /v1/tokens/{name}/step-up: the scopes
// a resource asked for in a 403 insufficient_scope answer (space
// separated, as in its WWW-Authenticate) and that challenge.
type StepUpRequest struct {
	Scope     string `json:"scope"`
	Challenge string `json:"www_authenticate,omitempty"`
}

// CodeStepUpLimit (429): POST .../step-up beyond the number of step-ups a
// grant may record in a while; an authorization loop is refused, not
// followed.
const CodeStepUpLimit = "step_up_limit"

// Rejected reports that a resource refused the grant's access token and
// returns a token other than the refused one (POST
// /v1/tokens/{name}/rejected): when the refused token is still the
// grant's current one the daemon refreshes once (joined with concurrent
// callers), else it answers the current token at once. Its errors are
// those of Token.
func (c *Client) Rejected(ctx context.Context, name string, req RejectedRequest) (*TokenResponse, error) {
	return postJSON[TokenResponse](ctx, c, name, "rejected", req)
}

// StepUp records the scopes a resource asked for (POST
// /v1/tokens/{name}/step-up): the grant then needs an authorization for
// the scopes it holds and these (state reauthorization_required, with
// GrantStatus.StepUpScopes), unless its current token covers them
// already. Beyond a bounded number of step-ups it is an *Error with Code
// CodeStepUpLimit.
func (c *Client) StepUp(ctx context.Context, name string, req StepUpRequest) (*GrantStatus, error) {
	return postJSON[GrantStatus](ctx, c, name, "step-up", req)
}

// AuthorizePaste starts a paste-back authorization of an
// authorization_code grant (POST /v1/tokens/{name}/authorize with
// {"paste": true}; operators only): the answer's URL is the authorization
// server's, to open in any browser, and its PasteID names it for
// CompletePaste, which the same user must call with the address the
// browser ended on.
func (c *Client) AuthorizePaste(ctx context.Context, name string) (*AuthorizeResponse, error) {
	return postJSON[AuthorizeResponse](ctx, c, name, "authorize", AuthorizeRequest{Paste: true})
}

// CompletePaste completes a paste-back authorization (POST
// /v1/tokens/{name}/authorize/complete): pasteID from AuthorizePaste and
// address, where the browser ended. The daemon checks the answer's state
// (and iss, where the server sends it), uses it once, and answers the
// grant's status; a refused paste is an *Error with Code
// CodePasteRefused.
func (c *Client) CompletePaste(ctx context.Context, name, pasteID, address string) (*GrantStatus, error) {
	return postJSON[GrantStatus](ctx, c, name, "authorize/complete", CompleteRequest{PasteID: pasteID, URL: address})
}

// postJSON posts body as JSON to /v1/tokens/{name}/{action} and decodes
// the answer into a T.
func postJSON[T any](ctx context.Context, c *Client, name, action string, body any) (*T, error) {
	if name == "" {
		return nil, errors.New("tokend: no grant name given")
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("tokend: %w", err)
	}
	u := &url.URL{Scheme: "http", Host: "tokend", Path: "/v1/tokens/" + name + "/" + action, RawPath: "/v1/tokens/" + url.PathEscape(name) + "/" + action}
	answer, err := c.send(ctx, http.MethodPost, u, "application/json", b)
	if err != nil {
		return nil, err
	}
	var out T
	if err := decodeAnswer(answer, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
