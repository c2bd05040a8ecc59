package daemon

// Loading, defaulting, validating and explaining the configuration file.
// Config itself (config.go) is a plain struct so tests can build a daemon
// without files; everything that knows about YAML, files, users and
// credentials lives here.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/tokend/tokend/oauth"
	"github.com/tokend/tokend/store"
)

// Default locations. Under systemd the store and the socket move to the
// directories systemd creates ($STATE_DIRECTORY, $RUNTIME_DIRECTORY).
const (
	DefaultConfigFile = "/etc/tokend/config.yaml"
	DefaultStorePath  = "/var/lib/tokend/tokend.db"
	DefaultSocketPath = "/run/tokend/tokend.sock"
	DefaultCallback   = "127.0.0.1:8785"
	DefaultMetrics    = "127.0.0.1:9785"
	DefaultSchedule   = "@every 15s"
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

// GrantTypes lists the valid grant types, in the order error messages show them.
var GrantTypes = []string{GrantAuthorizationCode, GrantClientCredentials, GrantPassword, GrantDeviceCode}

var authMethods = []string{"client_secret_basic", "client_secret_post", "none"}

// nameRE restricts provider, client and grant names: they appear in URL
// paths (/v1/tokens/{name}), metric labels and log lines.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ParseSchedule parses a cron spec the way the daemon does: five fields
// ("0 3 * * *"), an optional CRON_TZ= prefix, or a descriptor such as
// "@every 15s", "@hourly" or "@daily".
func ParseSchedule(spec string) (cron.Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("daemon: schedule %q: %w", spec, err)
	}
	return s, nil
}

// LoadConfig reads, strictly decodes, defaults and validates the YAML file
// at path, and resolves the secrets it names: client secrets and passwords
// from files or systemd credentials, and the store key. It returns
// warnings (such as a secret file readable by others) separately from
// errors; the error, when not nil, joins every problem found, each naming
// the file, line and key path. Secrets never appear in either.
func LoadConfig(path string) (*Config, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("daemon: config: %w", err)
	}
	c, p, err := decodeConfig(data, path)
	if err != nil {
		return nil, p.warns, err
	}
	c.ApplyDefaults()
	c.validate(p)
	c.resolveSecrets(p)
	if err := p.err(); err != nil {
		return nil, p.warns, err
	}
	return c, p.warns, nil
}

// ParseConfig decodes data strictly (name is the file name used in
// messages), applies defaults and validates. Unlike LoadConfig it reads no
// files: secret files and credentials are not resolved, so Secret, Password
// and Key stay zero.
func ParseConfig(data []byte, name string) (*Config, []string, error) {
	c, p, err := decodeConfig(data, name)
	if err != nil {
		return nil, p.warns, err
	}
	c.ApplyDefaults()
	c.validate(p)
	if err := p.err(); err != nil {
		return nil, p.warns, err
	}
	return c, p.warns, nil
}

// ApplyDefaults fills every unset field with its default. Call it before
// Validate on a Config built in code. Store and socket paths follow
// $STATE_DIRECTORY and $RUNTIME_DIRECTORY when systemd sets them.
func (c *Config) ApplyDefaults() {
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
	if c.Listen.SocketMode == "" {
		c.Listen.SocketMode = "0660"
	}
	if c.Listen.Callback == "" {
		c.Listen.Callback = DefaultCallback
	}
	if c.Listen.Metrics == "" {
		c.Listen.Metrics = DefaultMetrics
	}
	r := &c.Refresh
	if r.Schedule == "" {
		r.Schedule = DefaultSchedule
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
		if cl.AuthMethod == "" {
			switch {
			case cl.Dynamic(), hasClientSecret(cl):
				cl.AuthMethod = "client_secret_basic"
			default:
				cl.AuthMethod = "none" // a public client (PKCE)
			}
		}
		if cl.RedirectURI == "" && codeClients[name] && c.Listen.Callback != "off" {
			cl.RedirectURI = "http://" + c.Listen.Callback + "/callback"
		}
		c.Clients[name] = cl
	}
}

// Validate checks the configuration and returns every problem found,
// joined, each naming its key path. Call ApplyDefaults first. It looks up
// user and group names with the system's user database. A Config whose
// secrets were set in code (ClientConfig.Secret, GrantConfig.Password) needs
// no secret files.
func (c *Config) Validate() error {
	p := &problems{}
	c.validate(p)
	return p.err()
}

// Mode parses SocketMode, an octal permission string such as "0660".
func (l ListenConfig) Mode() (os.FileMode, error) {
	s := strings.TrimPrefix(strings.TrimPrefix(l.SocketMode, "0o"), "0O")
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("daemon: socket_mode %q is not an octal permission such as \"0660\"", l.SocketMode)
	}
	return os.FileMode(m), nil
}

// Resolve looks up user and group names and returns the numeric ids, with
// UIDs and GIDs appended as given. A name that is all digits and names no
// user (or group) is taken as a number. Every unknown name is reported.
func (r Readers) Resolve() (uids, gids []uint32, err error) {
	var errs []error
	for _, name := range r.Users {
		id, err := lookupUser(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uids = append(uids, id)
	}
	for _, id := range r.UIDs {
		if id < 0 || int64(id) > int64(^uint32(0)) {
			errs = append(errs, fmt.Errorf("daemon: uid %d is out of range", id))
			continue
		}
		uids = append(uids, uint32(id))
	}
	for _, name := range r.Groups {
		id, err := lookupGroup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		gids = append(gids, id)
	}
	for _, id := range r.GIDs {
		if id < 0 || int64(id) > int64(^uint32(0)) {
			errs = append(errs, fmt.Errorf("daemon: gid %d is out of range", id))
			continue
		}
		gids = append(gids, uint32(id))
	}
	return uids, gids, errors.Join(errs...)
}

func lookupUser(name string) (uint32, error) {
	u, err := user.Lookup(name)
	if err == nil {
		id, perr := strconv.ParseUint(u.Uid, 10, 32)
		if perr != nil {
			return 0, fmt.Errorf("daemon: user %q has a non-numeric uid %q", name, u.Uid)
		}
		return uint32(id), nil
	}
	if id, perr := strconv.ParseUint(name, 10, 32); perr == nil {
		return uint32(id), nil
	}
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		return 0, fmt.Errorf("daemon: unknown user %q", name)
	}
	return 0, fmt.Errorf("daemon: looking up user %q: %w", name, err)
}

func lookupGroup(name string) (uint32, error) {
	g, err := user.LookupGroup(name)
	if err == nil {
		id, perr := strconv.ParseUint(g.Gid, 10, 32)
		if perr != nil {
			return 0, fmt.Errorf("daemon: group %q has a non-numeric gid %q", name, g.Gid)
		}
		return uint32(id), nil
	}
	if id, perr := strconv.ParseUint(name, 10, 32); perr == nil {
		return uint32(id), nil
	}
	var unknown user.UnknownGroupError
	if errors.As(err, &unknown) {
		return 0, fmt.Errorf("daemon: unknown group %q", name)
	}
	return 0, fmt.Errorf("daemon: looking up group %q: %w", name, err)
}

// firstDir returns the first of systemd's colon-separated directory list.
func firstDir(list string) string {
	d, _, _ := strings.Cut(list, ":")
	return d
}

func hasClientSecret(cl ClientConfig) bool {
	return cl.ClientSecretFile != "" || cl.ClientSecretCredential != "" || !cl.Secret.IsZero()
}

func hasPassword(g GrantConfig) bool {
	return g.PasswordFile != "" || g.PasswordCredential != "" || !g.Password.IsZero()
}

// problems collects errors and warnings, each located by key path and,
// when the config came from YAML, by file and line.
type problems struct {
	name  string         // file name; "" for a Config built in code
	lines map[string]int // key path → line of the key
	errs  []error
	warns []string
}

func (p *problems) where(path string) string {
	if p.name == "" {
		if path == "" {
			return "daemon: config"
		}
		return "daemon: config: " + path
	}
	loc := p.name
	if line := p.line(path); line > 0 {
		loc += ":" + strconv.Itoa(line)
	}
	if path == "" {
		return loc
	}
	return loc + ": " + path
}

// line returns the line of path, or of its nearest ancestor present in the
// file (a missing key is reported where its parent is).
func (p *problems) line(path string) int {
	for path != "" {
		if l, ok := p.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
	return 0
}

func (p *problems) errorf(path, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", p.where(path), fmt.Sprintf(format, args...)))
}

func (p *problems) warnf(path, format string, args ...any) {
	p.warns = append(p.warns, fmt.Sprintf("%s: %s", p.where(path), fmt.Sprintf(format, args...)))
}

// err joins the problems, in the order of their lines in the file.
func (p *problems) err() error {
	if p.name != "" {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.lineOf(p.errs[i]) < p.lineOf(p.errs[j]) })
	}
	return errors.Join(p.errs...)
}

// lineOf reads the line back from a "name:line: ..." message (0: none).
func (p *problems) lineOf(err error) int {
	rest, ok := strings.CutPrefix(err.Error(), p.name+":")
	if !ok {
		return 0
	}
	digits, _, _ := strings.Cut(rest, ":")
	n, _ := strconv.Atoi(digits)
	return n
}

// decodeConfig decodes data strictly. It walks the YAML node tree itself
// against the Config type so an unknown key is reported with its path and
// line ("unknown key "tokn_endpoint" in providers.corp"), which yaml.v3's
// own message ("field tokn_endpoint not found in type daemon.ProviderConfig")
// does not say; it keeps the line of every key for later messages.
func decodeConfig(data []byte, name string) (*Config, *problems, error) {
	p := &problems{name: name, lines: map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.errs = append(p.errs, yamlError(p, err))
		return nil, p, p.err()
	}
	c := &Config{}
	if doc.Kind == 0 || len(doc.Content) == 0 { // empty file
		p.warnf("", "the file is empty")
		return c, p, nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			p.warnf("", "the file is empty")
			return c, p, nil
		}
		p.errs = append(p.errs, fmt.Errorf("%s:%d: the top level must be a mapping of keys (store, listen, providers, ...)", name, root.Line))
		return nil, p, p.err()
	}
	checkKeys(p, root, reflect.TypeOf(Config{}), "")

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			p.errs = append(p.errs, yamlError(p, err))
			return nil, p, p.err()
		}
		unknownSeen := len(p.errs) > 0
		for _, msg := range te.Errors {
			if strings.Contains(msg, " not found in type ") && unknownSeen {
				continue // reported by checkKeys, with the path
			}
			p.errs = append(p.errs, typeError(p, msg))
		}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errs = append(p.errs, fmt.Errorf("%s:%d: only one YAML document is allowed", name, extra.Line))
	}
	if len(p.errs) > 0 {
		return nil, p, p.err()
	}
	return c, p, nil
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError rewrites a yaml.v3 syntax error into "file:line: message".
func yamlError(p *problems, err error) error {
	msg := err.Error()
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", p.name, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", p.name, strings.TrimPrefix(msg, "yaml: "))
}

var unmarshalRE = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (.*)$")

// typeError rewrites one of yaml.v3's "line N: cannot unmarshal ..."
// messages, naming the key path and what was expected.
func typeError(p *problems, msg string) error {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return fmt.Errorf("%s: %s", p.name, msg)
	}
	line, _ := strconv.Atoi(m[1])
	text := m[2]
	if u := unmarshalRE.FindStringSubmatch(text); u != nil {
		kind, value, into := u[1], u[2], u[3]
		switch {
		case into == "time.Duration":
			text = fmt.Sprintf("invalid duration %q: use a Go duration with a unit, such as \"90s\" or \"24h\"", value)
		case strings.HasPrefix(into, "[]"):
			text = fmt.Sprintf("expected a list, found %s %q", kind, value)
		case strings.HasPrefix(into, "map[") || strings.HasPrefix(into, "daemon."):
			text = fmt.Sprintf("expected a mapping of keys, found %s %q", kind, value)
		case strings.HasPrefix(into, "int") || strings.HasPrefix(into, "float"):
			text = fmt.Sprintf("expected a number, found %q", value)
		case into == "bool":
			text = fmt.Sprintf("expected true or false, found %q", value)
		default:
			text = fmt.Sprintf("cannot use %s %q as %s", kind, value, into)
		}
	}
	if path := p.pathAt(line); path != "" && strings.HasPrefix(m[2], "cannot unmarshal") {
		return fmt.Errorf("%s:%d: %s: %s", p.name, line, path, text)
	}
	return fmt.Errorf("%s:%d: %s", p.name, line, text)
}

// pathAt returns the deepest key path whose key sits on line.
func (p *problems) pathAt(line int) string {
	best := ""
	for path, l := range p.lines {
		if l == line && len(path) > len(best) {
			best = path
		}
	}
	return best
}

// checkKeys records the line of every key under n and reports keys that t
// has no field for.
func checkKeys(p *problems, n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error the decoder reports
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.Tag == "!!merge" {
				checkMerge(p, v, t, path)
				continue
			}
			kp := keyPath(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				in := path
				if in == "" {
					in = "the top level"
				}
				p.errs = append(p.errs, fmt.Errorf("%s:%d: unknown key %q in %s%s", p.name, k.Line, k.Value, in, suggest(k.Value, fields)))
				continue
			}
			p.lines[kp] = k.Line
			checkKeys(p, v, ft, kp)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := keyPath(path, k.Value)
			p.lines[kp] = k.Line
			checkKeys(p, v, t.Elem(), kp)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, v := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			p.lines[ip] = v.Line
			checkKeys(p, v, t.Elem(), ip)
		}
	}
}

func checkMerge(p *problems, v *yaml.Node, t reflect.Type, path string) {
	for v.Kind == yaml.AliasNode && v.Alias != nil {
		v = v.Alias
	}
	if v.Kind == yaml.SequenceNode {
		for _, m := range v.Content {
			checkMerge(p, m, t, path)
		}
		return
	}
	checkKeys(p, v, t, path)
}

func keyPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlFields maps the YAML key names of struct t to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = f.Type
	}
	return m
}

// suggest proposes a known key close to an unknown one (a typo).
func suggest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for k := range fields {
		if d := editDistance(key, k); d < bestD || (d == bestD && best != "" && k < best) {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// validate appends every problem of c to p.
func (c *Config) validate(p *problems) {
	// store
	if c.Store.Path == "" {
		p.errorf("store.path", "must be set")
	} else if !filepath.IsAbs(c.Store.Path) {
		p.errorf("store.path", "%q must be an absolute path", c.Store.Path)
	}
	if c.Store.KeyFile != "" && !filepath.IsAbs(c.Store.KeyFile) {
		p.errorf("store.key_file", "%q must be an absolute path", c.Store.KeyFile)
	}

	// listen
	if c.Listen.Socket == "" {
		p.errorf("listen.socket", "must be set")
	} else if !filepath.IsAbs(c.Listen.Socket) {
		p.errorf("listen.socket", "%q must be an absolute path", c.Listen.Socket)
	}
	if _, err := c.Listen.Mode(); err != nil {
		p.errorf("listen.socket_mode", "%q is not an octal permission of at most 0777, such as \"0660\"", c.Listen.SocketMode)
	}
	if c.Listen.SocketGroup != "" {
		if _, err := lookupGroup(c.Listen.SocketGroup); err != nil {
			p.errorf("listen.socket_group", "%s", strings.TrimPrefix(err.Error(), "daemon: "))
		}
	}
	if c.Listen.Callback != "off" {
		checkHostPort(p, "listen.callback", c.Listen.Callback, true)
	}
	if c.Listen.Metrics != "off" {
		checkHostPort(p, "listen.metrics", c.Listen.Metrics, false)
	}

	// refresh
	r := c.Refresh
	if _, err := ParseSchedule(r.Schedule); err != nil {
		p.errorf("refresh.schedule", "%s", scheduleMsg(r.Schedule, err))
	}
	if !(r.Fraction > 0 && r.Fraction < 1) {
		p.errorf("refresh.fraction", "%v must be between 0 and 1 (exclusive), e.g. 0.75", r.Fraction)
	}
	if !(r.Jitter >= 0 && r.Jitter < 0.5) {
		p.errorf("refresh.jitter", "%v must be at least 0 and less than 0.5, e.g. 0.05", r.Jitter)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"refresh.min_remaining", r.MinRemaining},
		{"refresh.default_lifetime", r.DefaultLifetime},
		{"refresh.max_interval", r.MaxInterval},
		{"refresh.timeout", r.Timeout},
	} {
		if d.v < 0 {
			p.errorf(d.key, "%s must not be negative", d.v)
		}
	}
	if r.Concurrency < 1 {
		p.errorf("refresh.concurrency", "%d must be at least 1", r.Concurrency)
	}

	checkReaders(p, "operators", c.Operators)

	// log
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.errorf("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		p.errorf("log.format", "%q is not one of text, json", c.Log.Format)
	}

	// providers
	for _, name := range configKeys(c.Providers) {
		pv := c.Providers[name]
		path := "providers." + name
		checkName(p, path, name)
		if pv.Issuer == "" && pv.TokenEndpoint == "" {
			p.errorf(path, "needs an issuer (for discovery) or a token_endpoint")
		}
		for _, u := range []struct{ key, v string }{
			{"issuer", pv.Issuer},
			{"authorization_endpoint", pv.AuthorizationEndpoint},
			{"token_endpoint", pv.TokenEndpoint},
			{"revocation_endpoint", pv.RevocationEndpoint},
			{"device_authorization_endpoint", pv.DeviceAuthorizationEndpoint},
			{"registration_endpoint", pv.RegistrationEndpoint},
		} {
			if u.v != "" {
				checkURL(p, path+"."+u.key, u.v)
			}
		}
		if pv.Issuer != "" {
			if iu, err := url.Parse(pv.Issuer); err == nil && (iu.RawQuery != "" || iu.Fragment != "") {
				p.errorf(path+".issuer", "%q must not have a query or fragment (RFC 8414)", pv.Issuer)
			}
		}
	}

	// clients
	for _, name := range configKeys(c.Clients) {
		cl := c.Clients[name]
		path := "clients." + name
		checkName(p, path, name)
		pv, ok := c.Providers[cl.Provider]
		switch {
		case cl.Provider == "":
			p.errorf(path+".provider", "must name a provider")
		case !ok:
			p.errorf(path+".provider", "provider %q is not defined under providers%s", cl.Provider, definedList(c.Providers))
		}
		if cl.ClientSecretFile != "" && cl.ClientSecretCredential != "" {
			p.errorf(path, "give client_secret_file or client_secret_credential, not both")
		}
		if cl.ClientSecretFile != "" && !filepath.IsAbs(cl.ClientSecretFile) {
			p.errorf(path+".client_secret_file", "%q must be an absolute path", cl.ClientSecretFile)
		}
		if cl.ClientSecretCredential != "" {
			checkCredentialName(p, path+".client_secret_credential", cl.ClientSecretCredential)
		}
		if cl.Dynamic() {
			if hasClientSecret(cl) {
				p.errorf(path, "has a client secret but no client_id (omit both to register dynamically)")
			}
			if ok && pv.RegistrationEndpoint == "" && pv.Issuer == "" {
				p.errorf(path+".client_id", "is not set, so the client is registered dynamically, but provider %q has no registration_endpoint and no issuer to discover one", cl.Provider)
			}
		}
		switch cl.AuthMethod {
		case "client_secret_basic", "client_secret_post":
			if !cl.Dynamic() && !hasClientSecret(cl) {
				p.errorf(path+".auth_method", "%s needs client_secret_file or client_secret_credential", cl.AuthMethod)
			}
		case "none":
			if hasClientSecret(cl) {
				p.errorf(path+".auth_method", "is none but a client secret is configured")
			}
		default:
			p.errorf(path+".auth_method", "%q is not one of %s", cl.AuthMethod, strings.Join(authMethods, ", "))
		}
		if cl.RedirectURI != "" {
			checkRedirect(p, path+".redirect_uri", cl.RedirectURI)
		}
	}

	// grants
	if len(c.Grants) == 0 {
		p.warnf("grants", "no grants are configured: tokend will serve no tokens")
	}
	for _, name := range configKeys(c.Grants) {
		g := c.Grants[name]
		path := "grants." + name
		checkName(p, path, name)
		cl, clientOK := c.Clients[g.Client]
		switch {
		case g.Client == "":
			p.errorf(path+".client", "must name a client")
		case !clientOK:
			p.errorf(path+".client", "client %q is not defined under clients%s", g.Client, definedList(c.Clients))
		}
		pv, providerOK := c.Providers[cl.Provider]
		providerOK = clientOK && providerOK
		switch g.Type {
		case GrantAuthorizationCode:
			if clientOK && cl.RedirectURI == "" {
				p.errorf(path+".type", "authorization_code needs a redirect_uri on client %q (listen.callback is off)", g.Client)
			}
			if providerOK && pv.AuthorizationEndpoint == "" && pv.Issuer == "" {
				p.errorf(path+".type", "authorization_code needs an authorization_endpoint or an issuer on provider %q", cl.Provider)
			}
		case GrantClientCredentials:
			if clientOK && !cl.Dynamic() && !hasClientSecret(cl) {
				p.errorf(path+".type", "client_credentials needs a confidential client: client %q has no client secret", g.Client)
			}
		case GrantPassword:
			if g.Username == "" {
				p.errorf(path+".username", "the password grant needs a username")
			}
			if !hasPassword(g) {
				p.errorf(path, "the password grant needs password_file or password_credential")
			}
			if g.PasswordFile != "" && g.PasswordCredential != "" {
				p.errorf(path, "give password_file or password_credential, not both")
			}
		case GrantDeviceCode:
			if providerOK && pv.DeviceAuthorizationEndpoint == "" && pv.Issuer == "" {
				p.errorf(path+".type", "device_code needs a device_authorization_endpoint or an issuer on provider %q", cl.Provider)
			}
		case "":
			p.errorf(path+".type", "must be set to one of %s", strings.Join(GrantTypes, ", "))
		default:
			p.errorf(path+".type", "unknown grant type %q: valid types are %s", g.Type, strings.Join(GrantTypes, ", "))
		}
		if g.Type != GrantPassword && (g.Username != "" || g.PasswordFile != "" || g.PasswordCredential != "") {
			p.errorf(path, "username, password_file and password_credential apply to the password grant only")
		}
		if g.PasswordFile != "" && !filepath.IsAbs(g.PasswordFile) {
			p.errorf(path+".password_file", "%q must be an absolute path", g.PasswordFile)
		}
		if g.PasswordCredential != "" {
			checkCredentialName(p, path+".password_credential", g.PasswordCredential)
		}
		for i, s := range g.Scopes {
			if s == "" || strings.ContainsAny(s, " \t\n\"\\") {
				p.errorf(fmt.Sprintf("%s.scopes[%d]", path, i), "%q is not a valid scope (no spaces, quotes or backslashes)", s)
			}
		}
		if g.RefreshTokenLifetime < 0 {
			p.errorf(path+".refresh_token_lifetime", "%s must not be negative", g.RefreshTokenLifetime)
		}
		if g.Schedule != "" {
			if _, err := ParseSchedule(g.Schedule); err != nil {
				p.errorf(path+".schedule", "%s", scheduleMsg(g.Schedule, err))
			}
		}
		checkReaders(p, path+".readers", g.Readers)
		if len(g.Readers.Users)+len(g.Readers.Groups)+len(g.Readers.UIDs)+len(g.Readers.GIDs) == 0 {
			p.warnf(path+".readers", "no readers: only root and operators can fetch this token")
		}
	}
}

func scheduleMsg(spec string, err error) string {
	var cause error = err
	if u := errors.Unwrap(err); u != nil {
		cause = u
	}
	return fmt.Sprintf("invalid schedule %q: %v (use 5 cron fields such as \"0 3 * * *\", or \"@every 15s\", \"@daily\")", spec, cause)
}

func checkName(p *problems, path, name string) {
	if !nameRE.MatchString(name) {
		p.errorf(path, "the name %q may only use letters, digits, '.', '_' and '-', starting with a letter or digit", name)
	}
}

func checkCredentialName(p *problems, path, name string) {
	if strings.ContainsRune(name, '/') || name == "." || name == ".." {
		p.errorf(path, "%q is not a credential name (no slashes)", name)
	}
}

func checkReaders(p *problems, path string, r Readers) {
	for i, name := range r.Users {
		if _, err := lookupUser(name); err != nil {
			p.errorf(fmt.Sprintf("%s.users[%d]", path, i), "%s", strings.TrimPrefix(err.Error(), "daemon: "))
		}
	}
	for i, name := range r.Groups {
		if _, err := lookupGroup(name); err != nil {
			p.errorf(fmt.Sprintf("%s.groups[%d]", path, i), "%s", strings.TrimPrefix(err.Error(), "daemon: "))
		}
	}
	for i, id := range r.UIDs {
		if id < 0 || int64(id) > int64(^uint32(0)) {
			p.errorf(fmt.Sprintf("%s.uids[%d]", path, i), "%d is out of range", id)
		}
	}
	for i, id := range r.GIDs {
		if id < 0 || int64(id) > int64(^uint32(0)) {
			p.errorf(fmt.Sprintf("%s.gids[%d]", path, i), "%d is out of range", id)
		}
	}
}

func checkHostPort(p *problems, path, addr string, warnPublic bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.errorf(path, "%q is not host:port, e.g. 127.0.0.1:8785", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.errorf(path, "%q has an invalid port", addr)
		return
	}
	if warnPublic && !isLoopback(host) {
		p.warnf(path, "%q is not a loopback address: the callback listener is reachable from other hosts", addr)
	}
}

// isLoopback reports whether host is localhost or a loopback IP.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkURL requires an absolute https URL, or http for a loopback host
// (local test providers): anything else would send secrets in clear text.
func checkURL(p *problems, path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		p.errorf(path, "%q is not an absolute http(s) URL", raw)
		return
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		p.errorf(path, "%q uses http to a non-loopback host: use https", raw)
	}
}

func checkRedirect(p *problems, path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		p.errorf(path, "%q is not an absolute URL", raw)
		return
	}
	if u.Path == "" || u.Path == "/" {
		p.errorf(path, "%q needs a path, e.g. /callback", raw)
	}
	if u.Fragment != "" {
		p.errorf(path, "%q must not have a fragment (RFC 6749 §3.1.2)", raw)
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		p.warnf(path, "%q uses http to a non-loopback host: authorization codes travel in clear text", raw)
	}
}

func definedList[V any](m map[string]V) string {
	if len(m) == 0 {
		return " (none are defined)"
	}
	return " (defined: " + strings.Join(configKeys(m), ", ") + ")"
}

func configKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// credentialPath returns the path of a systemd credential if it exists.
// (A local copy of systemd.Credential, so loading a config does not depend
// on that package.)
func credentialPath(name string) (string, bool) {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" || name == "" || strings.ContainsRune(name, '/') {
		return "", false
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		return "", false
	}
	return path, true
}

// readSecret reads a secret from a file (warning when others may read it)
// or from a systemd credential. Messages name the key and the file, never
// the contents.
func readSecret(p *problems, key, file, credential string) (string, bool) {
	path := file
	if file == "" {
		cp, ok := credentialPath(credential)
		if !ok {
			if os.Getenv("CREDENTIALS_DIRECTORY") == "" {
				p.errorf(key, "credential %q not found: $CREDENTIALS_DIRECTORY is not set (pass it with LoadCredential= in the unit)", credential)
			} else {
				p.errorf(key, "credential %q not found in $CREDENTIALS_DIRECTORY", credential)
			}
			return "", false
		}
		path = cp
	}
	fi, err := os.Stat(path)
	if err != nil {
		p.errorf(key, "cannot read %s: %s", path, errText(err))
		return "", false
	}
	if !fi.Mode().IsRegular() {
		p.errorf(key, "%s is not a regular file", path)
		return "", false
	}
	if file != "" && fi.Mode().Perm()&0o077 != 0 {
		p.warnf(key, "%s is readable by group or others (mode %04o): chmod 0600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		p.errorf(key, "cannot read %s: %s", path, errText(err))
		return "", false
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		p.errorf(key, "%s is empty", path)
		return "", false
	}
	return s, true
}

// errText is the reason of a file error without the path os repeats.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// resolveSecrets fills Store.Key, ClientConfig.Secret and
// GrantConfig.Password from files and credentials.
func (c *Config) resolveSecrets(p *problems) {
	keyPath, keyKey := c.Store.KeyFile, "store.key_file"
	if keyPath == "" {
		if cp, ok := credentialPath(StoreKeyCredential); ok {
			keyPath, keyKey = cp, "store (credential "+StoreKeyCredential+")"
		}
	}
	if keyPath != "" && len(c.Store.Key) == 0 && filepath.IsAbs(keyPath) {
		if fi, err := os.Stat(keyPath); err != nil {
			p.errorf(keyKey, "cannot read %s: %s", keyPath, errText(err))
		} else if data, err := os.ReadFile(keyPath); err != nil {
			p.errorf(keyKey, "cannot read %s: %s", keyPath, errText(err))
		} else {
			if c.Store.KeyFile != "" && fi.Mode().Perm()&0o077 != 0 {
				p.warnf(keyKey, "%s is readable by group or others (mode %04o): chmod 0600 it", keyPath, fi.Mode().Perm())
			}
			key, err := store.ParseKey(data)
			if err != nil {
				p.errorf(keyKey, "%s: %v", keyPath, err)
			} else {
				c.Store.Key = key
			}
		}
	}
	for _, name := range configKeys(c.Clients) {
		cl := c.Clients[name]
		if !cl.Secret.IsZero() || (cl.ClientSecretFile == "" && cl.ClientSecretCredential == "") {
			continue
		}
		if cl.ClientSecretFile != "" && !filepath.IsAbs(cl.ClientSecretFile) {
			continue // reported by validate
		}
		key := "clients." + name + ".client_secret_file"
		if cl.ClientSecretFile == "" {
			key = "clients." + name + ".client_secret_credential"
		}
		if s, ok := readSecret(p, key, cl.ClientSecretFile, cl.ClientSecretCredential); ok {
			cl.Secret = oauth.NewSecret(s)
			c.Clients[name] = cl
		}
	}
	for _, name := range configKeys(c.Grants) {
		g := c.Grants[name]
		if g.Type != GrantPassword || !g.Password.IsZero() || (g.PasswordFile == "" && g.PasswordCredential == "") {
			continue
		}
		if g.PasswordFile != "" && !filepath.IsAbs(g.PasswordFile) {
			continue
		}
		key := "grants." + name + ".password_file"
		if g.PasswordFile == "" {
			key = "grants." + name + ".password_credential"
		}
		if s, ok := readSecret(p, key, g.PasswordFile, g.PasswordCredential); ok {
			g.Password = oauth.NewSecret(s)
			c.Grants[name] = g
		}
	}
}

// Explain writes a readable summary of the configuration, as `tokend
// check-config` prints it: where things are, the refresh policy, every
// provider, client and grant. It never writes secrets.
func (c *Config) Explain(w io.Writer) {
	c.explain(w, time.Now())
}

func (c *Config) explain(w io.Writer, now time.Time) {
	sealed := "unsealed: secrets are stored in clear (set store.key_file or the " + StoreKeyCredential + " credential)"
	switch {
	case c.Store.KeyFile != "":
		sealed = "sealed with AES-256-GCM, key from " + c.Store.KeyFile
	case len(c.Store.Key) > 0:
		sealed = "sealed with AES-256-GCM, key from the " + StoreKeyCredential + " credential"
	}
	fmt.Fprintf(w, "store:     %s (%s)\n", c.Store.Path, sealed)
	sock := fmt.Sprintf("socket:    %s (mode %s", c.Listen.Socket, c.Listen.SocketMode)
	if c.Listen.SocketGroup != "" {
		sock += ", group " + c.Listen.SocketGroup
	}
	fmt.Fprintln(w, sock+")")
	fmt.Fprintf(w, "callback:  %s\n", c.Listen.Callback)
	fmt.Fprintf(w, "metrics:   %s\n", c.Listen.Metrics)
	r := c.Refresh
	fmt.Fprintf(w, "refresh:   wakes on %q; refreshes at %g%% of a token's lifetime (±%g%%) or when less than %s remains;\n",
		r.Schedule, r.Fraction*100, r.Jitter*100, r.MinRemaining)
	fmt.Fprintf(w, "           at least every %s; %d at a time; provider timeout %s; assumed lifetime %s\n",
		r.MaxInterval, r.Concurrency, r.Timeout, r.DefaultLifetime)
	fmt.Fprintf(w, "operators: root%s\n", readersText(c.Operators, ", "))
	fmt.Fprintf(w, "log:       %s, %s\n", c.Log.Level, c.Log.Format)

	fmt.Fprintf(w, "\nproviders (%d):\n", len(c.Providers))
	for _, name := range configKeys(c.Providers) {
		pv := c.Providers[name]
		if pv.Issuer != "" {
			fmt.Fprintf(w, "  %s: discovery from %s\n", name, pv.Issuer)
		} else {
			fmt.Fprintf(w, "  %s: explicit endpoints\n", name)
		}
		for _, e := range []struct{ k, v string }{
			{"authorization", pv.AuthorizationEndpoint},
			{"token", pv.TokenEndpoint},
			{"revocation", pv.RevocationEndpoint},
			{"device authorization", pv.DeviceAuthorizationEndpoint},
			{"registration", pv.RegistrationEndpoint},
		} {
			if e.v != "" {
				fmt.Fprintf(w, "    %-21s %s\n", e.k+":", e.v)
			}
		}
	}

	fmt.Fprintf(w, "\nclients (%d):\n", len(c.Clients))
	for _, name := range configKeys(c.Clients) {
		cl := c.Clients[name]
		id := "client_id " + cl.ClientID
		if cl.Dynamic() {
			id = "dynamic registration"
		}
		secret := "no secret (public client)"
		switch {
		case cl.ClientSecretFile != "":
			secret = "secret from " + cl.ClientSecretFile
		case cl.ClientSecretCredential != "":
			secret = "secret from credential " + cl.ClientSecretCredential
		case !cl.Secret.IsZero():
			secret = "secret set"
		case cl.Dynamic():
			secret = "secret from registration"
		}
		fmt.Fprintf(w, "  %s: provider %s, %s, %s, %s\n", name, cl.Provider, id, cl.AuthMethod, secret)
		if cl.RedirectURI != "" {
			fmt.Fprintf(w, "    redirect_uri: %s\n", cl.RedirectURI)
		}
	}

	fmt.Fprintf(w, "\ngrants (%d):\n", len(c.Grants))
	for _, name := range configKeys(c.Grants) {
		g := c.Grants[name]
		provider := c.Clients[g.Client].Provider
		fmt.Fprintf(w, "  %s: %s via client %s (provider %s)\n", name, g.Type, g.Client, provider)
		if len(g.Scopes) > 0 {
			fmt.Fprintf(w, "    scopes:   %s\n", strings.Join(g.Scopes, " "))
		}
		if g.Type == GrantPassword {
			fmt.Fprintf(w, "    username: %s\n", g.Username)
		}
		readers := strings.TrimPrefix(readersText(g.Readers, "; "), "; ")
		if readers == "" {
			readers = "root and operators only"
		}
		fmt.Fprintf(w, "    readers:  %s\n", readers)
		if g.RefreshTokenLifetime > 0 {
			fmt.Fprintf(w, "    refresh token lifetime (assumed): %s\n", g.RefreshTokenLifetime)
		}
		if g.Schedule != "" {
			if s, err := ParseSchedule(g.Schedule); err == nil {
				fmt.Fprintf(w, "    schedule: %q, next forced refresh %s\n", g.Schedule, s.Next(now).Format(time.RFC3339))
			}
		}
	}
}

func readersText(r Readers, sep string) string {
	var parts []string
	add := func(label string, items []string) {
		if len(items) > 0 {
			parts = append(parts, label+" "+strings.Join(items, ", "))
		}
	}
	add("users", r.Users)
	add("groups", r.Groups)
	add("uids", intsText(r.UIDs))
	add("gids", intsText(r.GIDs))
	if len(parts) == 0 {
		return ""
	}
	return sep + strings.Join(parts, sep)
}

func intsText(ids []int) []string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return s
}
