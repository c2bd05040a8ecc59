package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokend/tokend/oauth"
)

// Config is the whole configuration. It is a plain struct so tests build a
// daemon without files; Load decodes the YAML file strictly. Durations are
// Go durations in YAML ("90s", "24h").
type Config struct {
	Store     Store               `yaml:"store"`
	Listen    Listen              `yaml:"listen"`
	Refresh   Refresh             `yaml:"refresh"`
	Operators Readers             `yaml:"operators"`
	Log       Log                 `yaml:"log"`
	Providers map[string]Provider `yaml:"providers"`
	Clients   map[string]Client   `yaml:"clients"`
	Grants    map[string]Grant    `yaml:"grants"`
	Hooks     []Hook              `yaml:"hooks"` // config/hooks.go
	Fleet     Fleet               `yaml:"fleet"` // fleet mode (store.backend: etcd)
}

// Fleet names this instance among those sharing an etcd store.
type Fleet struct {
	Instance string `yaml:"instance"` // default: the hostname
}

// Etcd is the store section of fleet mode (store.backend: etcd).
type Etcd struct {
	Endpoints          []string      `yaml:"endpoints"`
	Prefix             string        `yaml:"prefix"` // default /tokend/
	Username           string        `yaml:"username"`
	PasswordFile       string        `yaml:"password_file"`
	PasswordCredential string        `yaml:"password_credential"`
	TLS                EtcdTLS       `yaml:"tls"`
	DialTimeout        time.Duration `yaml:"dial_timeout"` // default 5s
	LeaseTTL           time.Duration `yaml:"lease_ttl"`    // default 10s

	// Password is read from PasswordFile or PasswordCredential.
	Password oauth.Secret `yaml:"-"`
}

// EtcdTLS are the files of a TLS connection to etcd.
type EtcdTLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

type Store struct {
	Path    string `yaml:"path"`     // default /var/lib/tokend/tokend.db ($STATE_DIRECTORY/tokend.db under systemd)
	KeyFile string `yaml:"key_file"` // optional; else the systemd credential tokend.key if present
	Backend string `yaml:"backend"`  // bbolt (default) | etcd
	Etcd    Etcd   `yaml:"etcd"`
	// Key is the resolved 32-byte key (from KeyFile or the credential); nil: unsealed.
	Key []byte `yaml:"-"`
}

type Listen struct {
	Socket      string   `yaml:"socket"`       // default /run/tokend/tokend.sock ($RUNTIME_DIRECTORY/tokend.sock under systemd)
	SocketMode  FileMode `yaml:"socket_mode"`  // octal, default 0660
	SocketGroup string   `yaml:"socket_group"` // group owning the socket, by name or number; default DefaultSocketGroup if it exists
	Callback    string   `yaml:"callback"`     // default 127.0.0.1:8785; "off" disables
	Metrics     string   `yaml:"metrics"`      // default 127.0.0.1:9785; "off" disables

	// socketGID is the gid SocketGroup resolved to when the configuration
	// was validated; groupResolved says it was.
	socketGID     uint32
	groupResolved bool
}

// SocketGID returns the gid of SocketGroup, looked up when the
// configuration was loaded or validated, or -1 when no group is set. It
// never looks a name up itself: a Listen built in code that names a group
// must go through Validate first, else SocketGID fails.
func (l Listen) SocketGID() (int, error) {
	switch {
	case l.SocketGroup == "":
		return -1, nil
	case !l.groupResolved:
		return -1, fmt.Errorf("config: listen.socket_group %q was never resolved to a gid (Load, Parse and Validate resolve it)", l.SocketGroup)
	}
	return int(l.socketGID), nil
}

type Refresh struct {
	Schedule        Schedule      `yaml:"schedule"`         // wakes the scheduler, default "@every 15s"
	Fraction        float64       `yaml:"fraction"`         // default 0.75
	Jitter          float64       `yaml:"jitter"`           // default 0.05 (±5 % of the lifetime)
	MinRemaining    time.Duration `yaml:"min_remaining"`    // default 60s
	Concurrency     int           `yaml:"concurrency"`      // default 8
	DefaultLifetime time.Duration `yaml:"default_lifetime"` // default 1h, when the provider sends no expires_in
	MaxInterval     time.Duration `yaml:"max_interval"`     // default 24h
	Timeout         time.Duration `yaml:"timeout"`          // one HTTP request to a provider, default 30s
}

// Readers names who may do something: users and groups by name or number,
// and uids and gids. Names are looked up once, when the configuration is
// loaded or validated; IDs returns the result.
type Readers struct {
	Users  []string `yaml:"users"`
	Groups []string `yaml:"groups"`
	UIDs   []int    `yaml:"uids"`
	GIDs   []int    `yaml:"gids"`

	// ids are the ids of Users and Groups, in order, as validation
	// resolved them; nil when there were none to resolve. Behind a
	// pointer, as few Readers name users or groups: every grant has a
	// Readers, and two slices would be 48 bytes of each.
	ids *readerIDs
}

type readerIDs struct{ users, groups []uint32 }

// IDs returns every uid and gid r names: the ids Users resolved to, then
// UIDs; the ids Groups resolved to, then GIDs. It never looks a name up: it
// fails for a Readers that names users or groups that were never resolved
// (one built in code and not validated), and for an id out of range.
func (r Readers) IDs() (uids, gids []uint32, err error) {
	var userIDs, groupIDs []uint32
	if r.ids != nil {
		userIDs, groupIDs = r.ids.users, r.ids.groups
	}
	if len(userIDs) != len(r.Users) || len(groupIDs) != len(r.Groups) {
		return nil, nil, errors.New("config: the users and groups of a Readers were never resolved to ids (Load, Parse and Validate resolve them)")
	}
	uids = append(uids, userIDs...)
	gids = append(gids, groupIDs...)
	for _, id := range r.UIDs {
		if !idInRange(id) {
			return nil, nil, fmt.Errorf("config: uid %d is out of range", id)
		}
		uids = append(uids, uint32(id))
	}
	for _, id := range r.GIDs {
		if !idInRange(id) {
			return nil, nil, fmt.Errorf("config: gid %d is out of range", id)
		}
		gids = append(gids, uint32(id))
	}
	return uids, gids, nil
}

func (r Readers) empty() bool {
	return len(r.Users)+len(r.Groups)+len(r.UIDs)+len(r.GIDs) == 0
}

func idInRange(id int) bool { return id >= 0 && int64(id) <= int64(^uint32(0)) }

type Log struct {
	Level  string `yaml:"level"`  // debug | info (default) | warn | error
	Format string `yaml:"format"` // text (default) | json
}

type Provider struct {
	Issuer                      string `yaml:"issuer"`
	AuthorizationEndpoint       string `yaml:"authorization_endpoint"`
	TokenEndpoint               string `yaml:"token_endpoint"`
	RevocationEndpoint          string `yaml:"revocation_endpoint"`
	DeviceAuthorizationEndpoint string `yaml:"device_authorization_endpoint"`
	RegistrationEndpoint        string `yaml:"registration_endpoint"`
	// CAFile is a PEM bundle of the CAs that sign the provider's server
	// certificates (private PKI), instead of the system's.
	CAFile string `yaml:"ca_file"`

	// CAs is CAFile read and parsed; nil means the system's roots.
	CAs *x509.CertPool `yaml:"-"`

	// Resource is set on the provider tokend derives for a
	// protected_resource grant (resource.go): its endpoints are discovered
	// from the resource, not configured.
	Resource *ResourceDiscovery `yaml:"-"`
}

// Endpoints returns the explicitly configured endpoints.
func (p Provider) Endpoints() oauth.Endpoints {
	return oauth.Endpoints{
		Issuer:              p.Issuer,
		Authorization:       p.AuthorizationEndpoint,
		Token:               p.TokenEndpoint,
		Revocation:          p.RevocationEndpoint,
		DeviceAuthorization: p.DeviceAuthorizationEndpoint,
		Registration:        p.RegistrationEndpoint,
	}
}

type Client struct {
	Provider               string           `yaml:"provider"`
	ClientID               string           `yaml:"client_id"` // omit id and secret to register dynamically
	ClientSecretFile       string           `yaml:"client_secret_file"`
	ClientSecretCredential string           `yaml:"client_secret_credential"`
	AuthMethod             oauth.AuthMethod `yaml:"auth_method"` // client_secret_basic (default with a secret) | client_secret_post | none
	RedirectURI            string           `yaml:"redirect_uri"`
	ClientName             string           `yaml:"client_name"` // for dynamic registration, default "tokend on <hostname>"
	// private_key_jwt: the key (PEM, or a service-account JSON key file).
	PrivateKeyFile       string `yaml:"private_key_file"`
	PrivateKeyCredential string `yaml:"private_key_credential"`
	KeyID                string `yaml:"key_id"`      // kid; default from the key file when it has one
	SigningAlg           string `yaml:"signing_alg"` // default from the key and the provider's supported algs
	// AssertionAudience is the aud of client assertions: "" (the token
	// endpoint), "issuer", or a URL that names one of the two.
	AssertionAudience string `yaml:"assertion_audience"`
	// tls_client_auth / self_signed_tls_client_auth: the client certificate.
	TLSCertFile       string `yaml:"tls_cert_file"`
	TLSKeyFile        string `yaml:"tls_key_file"`
	TLSCertCredential string `yaml:"tls_cert_credential"`
	TLSKeyCredential  string `yaml:"tls_key_credential"`

	// Key is the parsed private key (private_key_jwt); nil otherwise.
	Key *oauth.SigningKey `yaml:"-"`
	// TLSCert is the parsed client certificate and key; nil otherwise.
	TLSCert *tls.Certificate `yaml:"-"`
	// Secret is the resolved client secret.
	Secret oauth.Secret `yaml:"-"`

	// anonymous is set by ApplyDefaults (clientauth.go, Anonymous).
	anonymous bool
	// ForGrant names the protected_resource grant this client was derived
	// for (resource.go); "" for a configured client. A derived client is
	// registered at runtime: by its metadata document (CIMD) when the
	// authorization server takes one, else dynamically.
	ForGrant string `yaml:"-"`
	// MetadataDocument is the client_id_metadata_document of the grant
	// a derived client serves.
	MetadataDocument string `yaml:"-"`
}

// Dynamic reports whether the client is to be registered dynamically: it
// has no client_id and is not anonymous (see Anonymous).
func (c Client) Dynamic() bool { return c.ClientID == "" && !c.anonymous }

// Grant types: the values of grants.*.type.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantDeviceCode        = "device_code"
	GrantJWTBearer         = "jwt_bearer"
	GrantTokenExchange     = "token_exchange"
)

// GrantTypes lists the valid grant types, in the order error messages show them.
var GrantTypes = []string{GrantAuthorizationCode, GrantClientCredentials, GrantPassword, GrantDeviceCode, GrantJWTBearer, GrantTokenExchange}

// Assertion is the JWT a jwt_bearer grant signs (RFC 7523 §2.1).
type Assertion struct {
	Issuer               string         `yaml:"issuer"`   // default: a service-account key's client_email
	Subject              string         `yaml:"subject"`  // default: the issuer
	Audience             string         `yaml:"audience"` // default: the token endpoint (or the key's token_uri)
	PrivateKeyFile       string         `yaml:"private_key_file"`
	PrivateKeyCredential string         `yaml:"private_key_credential"`
	KeyID                string         `yaml:"key_id"`
	SigningAlg           string         `yaml:"signing_alg"`
	Lifetime             time.Duration  `yaml:"lifetime"` // default 5m
	Claims               map[string]any `yaml:"claims"`

	// Key is the parsed key; ServiceAccount is set when the key came from
	// a service-account JSON key file.
	Key            oauth.SigningKey      `yaml:"-"`
	ServiceAccount *oauth.ServiceAccount `yaml:"-"`
}

type Grant struct {
	Client               string            `yaml:"client"`
	Type                 string            `yaml:"type"`
	Scopes               []string          `yaml:"scopes"`
	AuthParams           map[string]string `yaml:"auth_params"`
	TokenParams          map[string]string `yaml:"token_params"`
	RefreshTokenLifetime time.Duration     `yaml:"refresh_token_lifetime"` // when the provider does not say
	Schedule             Schedule          `yaml:"schedule"`               // optional, forces a refresh
	Readers              Readers           `yaml:"readers"`
	Match                []string          `yaml:"match"`               // credential helpers: URL prefixes (match.go)
	MatchUsername        string            `yaml:"match_username"`      // credential helpers: username, default oauth2
	Username             string            `yaml:"username"`            // password grant
	PasswordFile         string            `yaml:"password_file"`       // password grant
	PasswordCredential   string            `yaml:"password_credential"` // password grant
	// Password is the resolved password (password grant).
	Password oauth.Secret `yaml:"-"`
	Sinks    []Sink       `yaml:"sinks"` // files kept holding the access token (sinks.go)

	// DPoP asks for DPoP-bound tokens (RFC 9449): tokend keeps a key per
	// grant and signs the proofs.
	DPoP bool `yaml:"dpop"`
	// Assertion is what a jwt_bearer grant signs.
	Assertion *Assertion `yaml:"assertion"`
	// IdentityAssertion is where a jwt_bearer grant gets its assertion
	// instead: from an identity provider (identityassertion.go).
	IdentityAssertion *IdentityAssertion `yaml:"identity_assertion"`
	// token_exchange: the subject token is SubjectGrant's current access
	// token (or id token, SubjectTokenType id_token); ActorGrant's is the
	// actor token.
	SubjectGrant       string   `yaml:"subject_grant"`
	SubjectTokenType   string   `yaml:"subject_token_type"` // access_token (default) | id_token | a URN
	ActorGrant         string   `yaml:"actor_grant"`
	ActorTokenType     string   `yaml:"actor_token_type"`
	RequestedTokenType string   `yaml:"requested_token_type"`
	Audience           []string `yaml:"audience"`
	Resource           []string `yaml:"resource"`

	// ProtectedResource is the URL of the resource the grant's token is
	// for (resource.go): its authorization server, scopes and the client's
	// registration are discovered from it, and it is sent as the RFC 8707
	// resource of every request.
	ProtectedResource string `yaml:"protected_resource"`
	// AuthorizationServer chooses among the resource's authorization
	// servers (default: the first it lists).
	AuthorizationServer string `yaml:"authorization_server"`
	// ClientIDMetadataDocument is the https URL where the operator
	// publishes the client's metadata: its client_id at an authorization
	// server that takes such documents.
	ClientIDMetadataDocument string `yaml:"client_id_metadata_document"`
	// Proxy is the local proxy the daemon serves for the grant: requests
	// to it are sent on to the resource with the grant's token.
	Proxy *GrantProxy `yaml:"proxy"`
}

// Default locations. Under systemd the store and the socket move to the
// directories systemd creates ($STATE_DIRECTORY, $RUNTIME_DIRECTORY).
const (
	DefaultFile       = "/etc/tokend/config.yaml"
	DefaultStorePath  = "/var/lib/tokend/tokend.db"
	DefaultSocketPath = "/run/tokend/tokend.sock"
	DefaultSocketMode = 0o660
	// DefaultSocketGroup is the group that may connect to the socket when
	// listen.socket_group is not set and a group of this name exists (the
	// package's sysusers.d snippet creates it; tokend.socket gives it the
	// socket). It is not tokend's own group, which reads /etc/tokend.
	DefaultSocketGroup = "tokend-clients"
	DefaultCallback    = "127.0.0.1:8785"
	DefaultMetrics     = "127.0.0.1:9785"
	DefaultSchedule    = "@every 15s"
	// StoreKeyCredential is the systemd credential holding the store key
	// when store.key_file is not set.
	StoreKeyCredential = "tokend.key"
)

// Refresh policy defaults.
const (
	DefaultFraction        = 0.75
	DefaultJitter          = 0.05
	DefaultMinRemaining    = 60 * time.Second
	DefaultConcurrency     = 8
	DefaultLifetime        = time.Hour
	DefaultMaxInterval     = 24 * time.Hour
	DefaultProviderTimeout = 30 * time.Second
)

var defaultSchedule = MustParseSchedule(DefaultSchedule)

// ApplyDefaults fills every unset field with its default. Call it before
// Validate on a Config built in code. Store and socket paths follow
// $STATE_DIRECTORY and $RUNTIME_DIRECTORY when systemd sets them.
func (c *Config) ApplyDefaults() {
	c.applyResourceDefaults()
	c.applyHookDefaults()
	c.applyClientAuthDefaults()
	c.applyGrantDefaults()
	c.applyFleetDefaults()
	if c.Store.Path == "" {
		c.Store.Path = DefaultStorePath
		if d := firstDir(os.Getenv("STATE_DIRECTORY")); d != "" {
			c.Store.Path = filepath.Join(d, "tokend.db")
		}
	}
	if c.Listen.Socket == "" {
		c.Listen.Socket = DefaultSocketPath
		if d := firstDir(os.Getenv("RUNTIME_DIRECTORY")); d != "" {
			c.Listen.Socket = filepath.Join(d, "tokend.sock")
		}
	}
	if c.Listen.SocketMode.IsZero() {
		c.Listen.SocketMode = Mode(DefaultSocketMode)
	}
	if c.Listen.Callback == "" {
		c.Listen.Callback = DefaultCallback
	}
	if c.Listen.Metrics == "" {
		c.Listen.Metrics = DefaultMetrics
	}
	r := &c.Refresh
	if r.Schedule.IsZero() {
		r.Schedule = defaultSchedule
	}
	if r.Fraction == 0 {
		r.Fraction = DefaultFraction
	}
	if r.Jitter == 0 {
		r.Jitter = DefaultJitter
	}
	if r.MinRemaining == 0 {
		r.MinRemaining = DefaultMinRemaining
	}
	if r.Concurrency == 0 {
		r.Concurrency = DefaultConcurrency
	}
	if r.DefaultLifetime == 0 {
		r.DefaultLifetime = DefaultLifetime
	}
	if r.MaxInterval == 0 {
		r.MaxInterval = DefaultMaxInterval
	}
	if r.Timeout == 0 {
		r.Timeout = DefaultProviderTimeout
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}

	// Which clients serve an authorization_code grant: they need a
	// redirect URI, by default our own callback listener.
	codeClients := map[string]bool{}
	for _, g := range c.Grants {
		if g.Type == GrantAuthorizationCode {
			codeClients[g.Client] = true
		}
	}
	for name, cl := range c.Clients {
		if cl.AuthMethod == "" && cl.ForGrant == "" { // a derived client's is chosen at registration
			switch {
			case cl.Dynamic(), hasClientSecret(cl):
				cl.AuthMethod = oauth.AuthBasic
			default:
				cl.AuthMethod = oauth.AuthNone // a public client (PKCE)
			}
		}
		if cl.RedirectURI == "" && codeClients[name] && c.Listen.Callback != "off" {
			cl.RedirectURI = "http://" + c.Listen.Callback + "/callback"
		}
		c.Clients[name] = cl
	}
}

// firstDir returns the first of systemd's colon-separated directory list.
func firstDir(list string) string {
	d, _, _ := strings.Cut(list, ":")
	return d
}

func hasClientSecret(cl Client) bool {
	return cl.ClientSecretFile != "" || cl.ClientSecretCredential != "" || !cl.Secret.IsZero()
}

func hasPassword(g Grant) bool {
	return g.PasswordFile != "" || g.PasswordCredential != "" || !g.Password.IsZero()
}
