package store

import (
	"log/slog"
	"time"
)

// Options configure Open.
type Options struct {
	Path string
	// Key is a 32-byte AES-256 key; nil stores secrets unsealed.
	Key []byte
	// LockTimeout bounds the wait for the file lock; 0 means 2 s.
	LockTimeout time.Duration
	// NoSync disables fsync (benchmarks and tests only).
	NoSync bool
	Logger *slog.Logger
}

// Token is the stored token set and refresh bookkeeping of one grant.
// AccessToken, RefreshToken, IDToken and DPoPKey are sealed at rest. The record prints
// redacted through fmt and slog.
type Token struct {
	Grant         string
	AccessToken   string
	RefreshToken  string
	IDToken       string
	TokenType     string
	Scope         string
	Obtained      time.Time
	Expiry        time.Time // zero: unknown (the daemon applies a default)
	RefreshExpiry time.Time // zero: unknown or never
	// RefreshIssued is when the current refresh token was issued (it stays
	// put across refreshes that do not rotate it).
	RefreshIssued time.Time
	Generation    uint64 // incremented on each new token set

	State      string // valid | refreshing | failing | expired | reauthorization_required | ...
	StateSince time.Time
	// LastError is a one-line, secret-free description of the last failure.
	LastError     string
	LastErrorCode string // provider error code or class
	LastAttempt   time.Time
	LastSuccess   time.Time
	Failures      int // consecutive
	// Auth records the outcome of the last authorization attempt (callback,
	// device flow), e.g. "authorized 2026-11-23T10:00:00Z" or "denied: access_denied".
	Auth   string
	AuthAt time.Time
	// DPoPKey is the grant's DPoP private key (oauth.DPoPKey.Marshal),
	// sealed at rest; empty for a grant without dpop. It goes with the
	// token set: a new authorization gets a new key.
	DPoPKey string
}

// Attempt is one refresh attempt, kept in a bounded per-grant history.
type Attempt struct {
	At      time.Time
	Result  string // "success" or a failure class
	Latency time.Duration
	Error   string // secret-free
	Reason  string // why it ran: due, schedule, on-demand, manual
}

// Client is a client registration: configured or obtained dynamically.
// ClientSecret and RegistrationAccessToken are sealed at rest.
type Client struct {
	Name                    string
	Provider                string
	ClientID                string
	ClientSecret            string
	AuthMethod              string
	RedirectURI             string
	RegistrationAccessToken string
	RegistrationClientURI   string
	SecretExpiresAt         time.Time
	Registered              time.Time
}

// Pending is one started authorization (authorization code or device). It is
// keyed by a hash of State, so the state value is not on disk. Verifier and
// DeviceCode are sealed.
type Pending struct {
	State       string
	Grant       string
	Kind        string // "authorization_code" | "device_code"
	Verifier    string
	Nonce       string
	RedirectURI string
	Created     time.Time
	Deadline    time.Time
	DeviceCode  string
	// StartHash is the hex SHA-256 of the one-time start id: the local
	// page that binds the authorization to the browser opening it. It is
	// cleared when that page is used, so the page works once.
	StartHash string
	// BindingHash is the hex SHA-256 of the cookie the start page set.
	// ConsumePending redeems the authorization only for a callback that
	// presents that cookie; empty until the start page was used.
	BindingHash string
}
