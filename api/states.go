package api

// Grant states: GrantStatus.State, and the state label of the
// tokend_grant_state metric. valid, refreshing, failing, expired and
// reauthorization_required describe a token's life; the others name why a
// grant has none: a permanent failure that needs a person to change
// something, or an authorization never done.
const (
	// StateValid: the grant holds a token that has not expired.
	StateValid = "valid"
	// StateRefreshing: a refresh is running.
	StateRefreshing = "refreshing"
	// StateFailing: the last refresh failed with a transient error; the
	// token has not expired yet and tokend retries.
	StateFailing = "failing"
	// StateExpired: the token has expired (or was never obtained) and
	// tokend can obtain a new one without a person.
	StateExpired = "expired"
	// StateReauthorizationRequired: only a person can get a new token
	// (tokend authorize): the refresh token was rejected, revoked or never
	// obtained.
	StateReauthorizationRequired = "reauthorization_required"
	// StateCredentialsError: the provider rejected the client's
	// credentials; fix them and reload.
	StateCredentialsError = "credentials_error"
	// StateConfigurationError: the provider rejected the request as
	// configured (scope, grant type, endpoint); fix it and reload.
	StateConfigurationError = "configuration_error"
	// StatePendingAuthorization: a grant that needs a person has never
	// been authorized.
	StatePendingAuthorization = "pending_authorization"
)

var states = [...]string{
	StateValid,
	StateRefreshing,
	StateFailing,
	StateExpired,
	StateReauthorizationRequired,
	StateCredentialsError,
	StateConfigurationError,
	StatePendingAuthorization,
}

// States returns every grant state, in a fixed order. The returned slice
// is a copy.
func States() []string {
	return append([]string(nil), states[:]...)
}
