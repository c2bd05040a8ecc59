package daemon

import (
	"time"

	"github.com/tokend/tokend/oauth"
)

// Config is the whole daemon configuration. It is a plain struct so tests
// build a daemon without files; LoadConfig decodes the YAML file strictly.
// Durations are Go durations in YAML ("90s", "24h").
type Config struct {
	Store     StoreConfig               `yaml:"store"`
	Listen    ListenConfig              `yaml:"listen"`
	Refresh   RefreshConfig             `yaml:"refresh"`
	Operators Readers                   `yaml:"operators"`
	Log       LogConfig                 `yaml:"log"`
	Providers map[string]ProviderConfig `yaml:"providers"`
	Clients   map[string]ClientConfig   `yaml:"clients"`
	Grants    map[string]GrantConfig    `yaml:"grants"`
}

type StoreConfig struct {
	Path    string `yaml:"path"`     // default /var/lib/tokend/tokend.db ($STATE_DIRECTORY/tokend.db under systemd)
	KeyFile string `yaml:"key_file"` // optional; else the systemd credential tokend.key if present
	// Key is the resolved 32-byte key (from KeyFile or the credential); nil: unsealed.
	Key []byte `yaml:"-"`
}

type ListenConfig struct {
	Socket      string `yaml:"socket"`       // default /run/tokend/tokend.sock ($RUNTIME_DIRECTORY/tokend.sock under systemd)
	SocketMode  string `yaml:"socket_mode"`  // octal, default "0660"
	SocketGroup string `yaml:"socket_group"` // optional group owning the socket
	Callback    string `yaml:"callback"`     // default 127.0.0.1:8785; "" in a grant-less config still listens
	Metrics     string `yaml:"metrics"`      // default 127.0.0.1:9785; "off" disables
}

type RefreshConfig struct {
	Schedule        string        `yaml:"schedule"`         // cron spec waking the scheduler, default "@every 15s"
	Fraction        float64       `yaml:"fraction"`         // default 0.75
	Jitter          float64       `yaml:"jitter"`           // default 0.05 (±5 % of the lifetime)
	MinRemaining    time.Duration `yaml:"min_remaining"`    // default 60s
	Concurrency     int           `yaml:"concurrency"`      // default 8
	DefaultLifetime time.Duration `yaml:"default_lifetime"` // default 1h, when the provider sends no expires_in
	MaxInterval     time.Duration `yaml:"max_interval"`     // default 24h
	Timeout         time.Duration `yaml:"timeout"`          // one HTTP request to a provider, default 30s
}

// Readers names who may do something: users and groups by name or number.
type Readers struct {
	Users  []string `yaml:"users"`
	Groups []string `yaml:"groups"`
	UIDs   []int    `yaml:"uids"`
	GIDs   []int    `yaml:"gids"`
}

type LogConfig struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
	Format string `yaml:"format"` // text (default) | json
}

type ProviderConfig struct {
	Issuer                      string `yaml:"issuer"`
	AuthorizationEndpoint       string `yaml:"authorization_endpoint"`
	TokenEndpoint               string `yaml:"token_endpoint"`
	RevocationEndpoint          string `yaml:"revocation_endpoint"`
	DeviceAuthorizationEndpoint string `yaml:"device_authorization_endpoint"`
	RegistrationEndpoint        string `yaml:"registration_endpoint"`
}

// Endpoints returns the explicitly configured endpoints.
func (p ProviderConfig) Endpoints() oauth.Endpoints {
	return oauth.Endpoints{
		Issuer:              p.Issuer,
		Authorization:       p.AuthorizationEndpoint,
		Token:               p.TokenEndpoint,
		Revocation:          p.RevocationEndpoint,
		DeviceAuthorization: p.DeviceAuthorizationEndpoint,
		Registration:        p.RegistrationEndpoint,
	}
}

type ClientConfig struct {
	Provider               string `yaml:"provider"`
	ClientID               string `yaml:"client_id"` // omit id and secret to register dynamically
	ClientSecretFile       string `yaml:"client_secret_file"`
	ClientSecretCredential string `yaml:"client_secret_credential"`
	AuthMethod             string `yaml:"auth_method"` // client_secret_basic (default with a secret) | client_secret_post | none
	RedirectURI            string `yaml:"redirect_uri"`
	ClientName             string `yaml:"client_name"` // for dynamic registration, default "tokend on <hostname>"
	// Secret is the resolved client secret.
	Secret oauth.Secret `yaml:"-"`
}

// Dynamic reports whether the client is to be registered dynamically.
func (c ClientConfig) Dynamic() bool { return c.ClientID == "" }

// Grant types.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantDeviceCode        = "device_code"
)

type GrantConfig struct {
	Client               string            `yaml:"client"`
	Type                 string            `yaml:"type"`
	Scopes               []string          `yaml:"scopes"`
	AuthParams           map[string]string `yaml:"auth_params"`
	TokenParams          map[string]string `yaml:"token_params"`
	RefreshTokenLifetime time.Duration     `yaml:"refresh_token_lifetime"` // when the provider does not say
	Schedule             string            `yaml:"schedule"`               // optional cron spec forcing a refresh
	Readers              Readers           `yaml:"readers"`
	Username             string            `yaml:"username"`            // password grant
	PasswordFile         string            `yaml:"password_file"`       // password grant
	PasswordCredential   string            `yaml:"password_credential"` // password grant
	// Password is the resolved password (password grant).
	Password oauth.Secret `yaml:"-"`
}
