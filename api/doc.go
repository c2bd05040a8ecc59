// Package api is tokend's local API as a program sees it: the JSON shapes
// of its answers (TokenResponse, GrantStatus, ErrorResponse, ...), the
// error codes it answers with (the Code constants), the one list of grant
// states (the State constants, States), the Go client of the unix
// socket (Client, and WaitingClient, whose calls wait through a restart of
// the daemon), and how a URL picks a grant by its match prefixes
// (MatchPrefix, ParseMatchURL, MatchGrant), which the credential helpers
// use.
//
// tokend's socket server serves these types and the command line prints
// them; the states are also the values of the state label of the
// tokend_grant_state metric (package metrics).
//
// A Go program that only wants a token imports this package alone: it
// depends on the standard library only, not on the daemon, its store
// (bbolt), its OAuth client (x/oauth2) or Prometheus, and knows nothing of
// how tokens are obtained. TestImportsOnlyTheStandardLibrary keeps it so.
//
// The API, over HTTP on the unix socket (listen.socket):
//
//	GET  /v1/tokens                    TokenList: the grants the caller may read
//	GET  /v1/tokens/{name}             TokenResponse (?format=raw or Accept: text/plain: the bare token)
//	GET  /v1/tokens/{name}/status      GrantStatus with History
//	POST /v1/tokens/{name}/dpop        DPoPResponse for a DPoPRequest (the grant's readers; dpop grants only)
//	POST /v1/tokens/{name}/rejected    TokenResponse for a RejectedRequest (the grant's readers)
//	POST /v1/tokens/{name}/step-up     GrantStatus for a StepUpRequest (the grant's readers)
//	POST /v1/tokens/{name}/refresh     GrantStatus (operators)
//	POST /v1/tokens/{name}/authorize   AuthorizeResponse (operators)
//	POST /v1/tokens/{name}/authorize/complete
//	                                   GrantStatus for a CompleteRequest (the operator who started a paste-back)
//	POST /v1/tokens/{name}/revoke      GrantStatus (operators)
//	POST /v1/reload                    ReloadResponse (operators)
//
// Every error answer is an ErrorResponse; the Client returns it as an
// *Error carrying the HTTP status. docs/api.md describes each answer and
// error for people.
package api
