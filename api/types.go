package api

import "time"

// The JSON shapes of the local API (HTTP over the unix socket). The daemon
// encodes them; the Client, the command line and tests decode them.

// TokenResponse answers GET /v1/tokens/{name}. Field names follow the token
// endpoint and cloud metadata servers so existing clients parse it.
type TokenResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"`
	ExpiresIn   int64     `json:"expires_in"` // seconds, rounded down
	ExpiresAt   time.Time `json:"expires_at"` // RFC 3339
	Scope       string    `json:"scope,omitempty"`
}

// ErrorResponse is every error answer: 400 bad request, 403 not allowed, 404
// unknown grant, 409 reauthorization_required, 503 provider down and the
// token expired, and the others listed with the Code constants (codes.go).
// The Client returns it as an *Error.
type ErrorResponse struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// GrantStatus is one grant as GET /v1/tokens lists it and GET
// /v1/tokens/{name}/status shows it: no secrets.
type GrantStatus struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Provider string `json:"provider"`
	// TokenEndpoint is where the grant's token requests go (an mTLS alias
	// for a certificate-authenticated client), once the daemon has
	// resolved the provider; empty before.
	TokenEndpoint   string    `json:"token_endpoint,omitempty"`
	State           string    `json:"state"` // one of States()
	StateSince      time.Time `json:"state_since,omitzero"`
	Scope           string    `json:"scope,omitempty"`
	ExpiresAt       time.Time `json:"expires_at,omitzero"`
	ExpiresIn       int64     `json:"expires_in"`
	RefreshExpires  time.Time `json:"refresh_token_expires_at,omitzero"`
	HasRefreshToken bool      `json:"has_refresh_token"`
	Obtained        time.Time `json:"obtained_at,omitzero"`
	NextRefresh     time.Time `json:"next_refresh_at,omitzero"`
	LastSuccess     time.Time `json:"last_success_at,omitzero"`
	LastAttempt     time.Time `json:"last_attempt_at,omitzero"`
	LastError       string    `json:"last_error,omitempty"`
	LastErrorCode   string    `json:"last_error_code,omitempty"`
	Failures        int       `json:"consecutive_failures,omitempty"`
	Generation      uint64    `json:"generation"`
	Auth            string    `json:"authorization,omitempty"` // outcome of the last authorization attempt
	AuthAt          time.Time `json:"authorization_at,omitzero"`
	// Match and MatchUsername are the grant's match list and the username
	// the credential helpers send with its token (config keys match and
	// match_username; the username defaults to DefaultMatchUsername).
	// Shown, like the rest, only to callers who may read the grant.
	Match         []string `json:"match,omitempty"`
	MatchUsername string   `json:"match_username,omitempty"`
	// Sinks are the grant's configured files and how writing them goes.
	Sinks []SinkStatus `json:"sinks,omitempty"`
	// History is filled by /status only: the last refresh attempts, newest first.
	History []AttemptStatus `json:"history,omitempty"`
	// DPoP says the grant asks for DPoP-bound tokens (config key dpop);
	// its proofs come from POST /v1/tokens/{name}/dpop.
	DPoP bool `json:"dpop,omitempty"`
	// SubjectGrant is the grant whose token a token_exchange grant, or
	// a jwt_bearer grant's identity assertion, exchanges.
	SubjectGrant string `json:"subject_grant,omitempty"`
	// Fleet mode: the instance that refreshes the grant ("" none), whether
	// it is this one, and why this instance will not refresh it when its
	// definition differs from the fleet's.
	Refresher     string `json:"refresher,omitempty"`
	RefresherSelf bool   `json:"refresher_self,omitempty"`
	FleetConflict string `json:"fleet_conflict,omitempty"`
	// ProtectedResource is a resource-first grant's resource URL (config
	// key protected_resource): where the proxy and the MCP bridge send
	// requests by default.
	ProtectedResource string `json:"protected_resource,omitempty"`
	// StepUpScopes are the scopes a resource asked for (POST
	// .../step-up) that the next authorization adds to the held ones, and
	// StepUpReason says which resource asked and why.
	StepUpScopes []string `json:"step_up_scopes,omitempty"`
	StepUpReason string   `json:"step_up_reason,omitempty"`
}

// AuthorizeRequest is the optional body of POST
// /v1/tokens/{name}/authorize. Paste asks for a paste-back authorization
// (authorization_code grants): the answer's URL is the authorization
// server's own and PasteID names it for POST .../authorize/complete.
type AuthorizeRequest struct {
	Paste bool `json:"paste,omitempty"`
}

// CompleteRequest is the body of POST /v1/tokens/{name}/authorize/complete:
// the PasteID of a paste-back authorization and the address the browser
// ended on (the redirect URI with the authorization server's answer).
type CompleteRequest struct {
	PasteID string `json:"paste_id"`
	URL     string `json:"url"`
}

// DPoPRequest is the body of POST /v1/tokens/{name}/dpop: the one request
// (method and URL) the proof is for, and the resource server's nonce when
// it gave one.
type DPoPRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	Nonce  string `json:"nonce,omitempty"`
}

// DPoPResponse answers POST /v1/tokens/{name}/dpop: the grant's current
// DPoP-bound access token and a fresh proof for the request asked about.
// Send them as "Authorization: DPoP <access_token>" and "DPoP: <dpop>".
type DPoPResponse struct {
	AccessToken string    `json:"access_token"`
	TokenType   string    `json:"token_type"` // "DPoP"
	DPoP        string    `json:"dpop"`
	ExpiresIn   int64     `json:"expires_in"`
	ExpiresAt   time.Time `json:"expires_at"`
}

// SinkStatus is one file sink of a grant: whether the file holds the
// current token, the last error, and how its command last ran.
type SinkStatus struct {
	Path              string    `json:"path"`
	OK                bool      `json:"ok"`
	Error             string    `json:"error,omitempty"`
	WrittenAt         time.Time `json:"written_at,omitzero"`
	CommandExit       *int      `json:"command_exit,omitempty"`
	CommandError      string    `json:"command_error,omitempty"`
	CommandAt         time.Time `json:"command_at,omitzero"`
	CommandStderrTail string    `json:"command_stderr_tail,omitempty"`
}

// AttemptStatus is one past refresh attempt.
type AttemptStatus struct {
	At        time.Time `json:"at"`
	Result    string    `json:"result"`
	LatencyMS int64     `json:"latency_ms"`
	Reason    string    `json:"reason,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// TokenList answers GET /v1/tokens.
type TokenList struct {
	Grants []GrantStatus `json:"grants"`
}

// AuthCallbackUnbound starts the authorization outcome (GrantStatus.Auth)
// recorded when a callback that does not carry the cookie of the browser
// that opened the start page was refused. The authorization stays pending:
// the right browser can still complete it.
const AuthCallbackUnbound = "callback without the browser binding"

// AuthorizeResponse answers POST /v1/tokens/{name}/authorize: for an
// authorization_code grant the URL to open (a one-time start page on the
// callback listener, which redirects to the provider); for a device_code
// grant the verification URI and user code.
type AuthorizeResponse struct {
	Grant                   string    `json:"grant"`
	Kind                    string    `json:"kind"` // authorization_code | device_code | password | client_credentials
	URL                     string    `json:"url,omitempty"`
	UserCode                string    `json:"user_code,omitempty"`
	VerificationURI         string    `json:"verification_uri,omitempty"`
	VerificationURIComplete string    `json:"verification_uri_complete,omitempty"`
	ExpiresAt               time.Time `json:"expires_at,omitzero"`
	// Status is set when the grant needed no person (client_credentials,
	// password): it was obtained at once.
	Status *GrantStatus `json:"status,omitempty"`
	// PasteID is set for a paste-back authorization (AuthorizeRequest
	// Paste): URL is then the authorization server's address itself, and
	// the address the browser ends on goes to POST .../authorize/complete
	// with this id, from the same user.
	PasteID string `json:"paste_id,omitempty"`
}

// ReloadResponse answers POST /v1/reload: the configuration now in
// effect. Warnings are the new file's (a secret readable by others, ...);
// the daemon logs them too.
type ReloadResponse struct {
	Grants   int      `json:"grants"`
	Warnings []string `json:"warnings,omitempty"`
	// RestartNeeded lists the keys the file changed that a reload does not
	// apply (listen.callback, store.path, ...): they keep their running
	// values until tokend restarts.
	RestartNeeded []string `json:"restart_needed,omitempty"`
}
