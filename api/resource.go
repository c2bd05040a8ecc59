package api

import "context"

// AuthorizePaste starts a paste-back authorization of an
// authorization_code grant (POST /v1/tokens/{name}/authorize with
// {"paste": true}; operators only): the answer's URL is the authorization
// server's, to open in any browser, and its PasteID names it for
// CompletePaste, which the same user must call with the address the
// browser ended on.
func (c *Client) AuthorizePaste(ctx context.Context, name string) (*AuthorizeResponse, error) {
	return post[AuthorizeResponse](ctx, c, name, "authorize", AuthorizeRequest{Paste: true})
}

// CompletePaste completes a paste-back authorization (POST
// /v1/tokens/{name}/authorize/complete): pasteID from AuthorizePaste and
// address, where the browser ended. The daemon checks the answer's state
// (and iss, where the server sends it), uses it once, and answers the
// grant's status; a refused paste is an *Error with Code
// CodePasteRefused.
func (c *Client) CompletePaste(ctx context.Context, name, pasteID, address string) (*GrantStatus, error) {
	return post[GrantStatus](ctx, c, name, "authorize/complete", CompleteRequest{PasteID: pasteID, URL: address})
}
