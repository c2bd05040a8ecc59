package api

// Error codes: ErrorResponse.Error (and Error.Code) of the API's error
// answers, with the HTTP status each comes with.
const (
	// CodeForbidden (403): the caller may not read the grant (or no such
	// grant exists: the two are not told apart to callers who are not
	// operators), or the action needs an operator.
	CodeForbidden = "forbidden"
	// CodeUnknownGrant (404): no grant of that name; told to operators only.
	CodeUnknownGrant = "unknown_grant"
	// CodeReauthorizationRequired (409): only a person can get a token
	// (tokend authorize). The same string as StateReauthorizationRequired.
	CodeReauthorizationRequired = StateReauthorizationRequired
	// CodePendingAuthorization (409): the grant needs a person and has
	// never been authorized (tokend authorize). The same string as
	// StatePendingAuthorization, the state status shows for it.
	CodePendingAuthorization = StatePendingAuthorization
	// CodeTemporarilyUnavailable (503): the token has expired and the
	// provider is failing or did not answer in time; tokend retries.
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	// CodeCredentialsError (503): the token has expired and the provider
	// rejects the client's credentials. The same string as
	// StateCredentialsError.
	CodeCredentialsError = StateCredentialsError
	// CodeConfigurationError (503): the token has expired and the provider
	// rejects the request as configured. The same string as
	// StateConfigurationError.
	CodeConfigurationError = StateConfigurationError
	// CodeAuthorizationFailed (400, 500 or 502): POST .../authorize could not
	// start the authorization (or obtain the token of a grant that needs
	// no person).
	CodeAuthorizationFailed = "authorization_failed"
	// CodeRevocationFailed (502): POST .../revoke failed.
	CodeRevocationFailed = "revocation_failed"
	// CodeTimeout (504): POST .../refresh is still running; see the
	// grant's status.
	CodeTimeout = "timeout"
	// CodeRequestTooLarge (413): the request has a body over the limit.
	CodeRequestTooLarge = "request_too_large"
	// CodeTooManyConnections (503): the daemon has too many connections
	// open; try again later.
	CodeTooManyConnections = "too_many_connections"
	// CodeInvalidConfiguration (422): POST /v1/reload found the
	// configuration file invalid; the running configuration stays.
	CodeInvalidConfiguration = "invalid_configuration"
	// CodeNotSupported (501): POST /v1/reload on a daemon without a
	// configuration file (tokend dev).
	CodeNotSupported = "not_supported"
	// CodeInvalidRequest (400): the request's body is not what the
	// endpoint takes (POST .../dpop: method, url, nonce).
	CodeInvalidRequest = "invalid_request"
	// CodeDPoPNotEnabled (400): POST .../dpop for a grant without dpop:
	// its token is a Bearer token, fetched with GET.
	CodeDPoPNotEnabled = "dpop_not_enabled"
	// CodePasteRefused (400): POST .../authorize/complete with an address
	// or paste id that completes no pending paste-back authorization of
	// the caller (unknown, already used, expired, another user's, or an
	// answer whose state or iss does not match).
	CodePasteRefused = "paste_refused"
	// CodeInternalError (500): tokend itself failed.
	CodeInternalError = "internal_error"
)
