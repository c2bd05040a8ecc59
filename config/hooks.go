package config

// Hooks: commands and webhooks told about grant events (refreshed,
// failing, …). The daemon delivers them (daemon/hooks.go); this file
// decodes, defaults, checks and explains them.

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/oauth"
)

// Hook events.
const (
	EventRefreshed               = "refreshed"                // a new token was obtained and stored
	EventFailing                 = "failing"                  // the first failed attempt of a refresh round
	EventRecovered               = "recovered"                // a refresh succeeded after the grant was failing, expired or needed a person
	EventReauthorizationRequired = "reauthorization_required" // the grant now needs `tokend authorize`
	EventRevoked                 = "revoked"                  // an operator revoked the grant's tokens
	EventExpired                 = "expired"                  // a refresh failed after the access token had expired
	EventStepUp                  = "step_up"                  // a resource asked for scopes the grant's token lacks: it needs `tokend authorize`
)

// HookEvents lists every hook event, in the order docs/delivery.md gives them.
var HookEvents = []string{EventRefreshed, EventFailing, EventRecovered, EventReauthorizationRequired, EventRevoked, EventExpired, EventStepUp}

// DefaultHookTimeout bounds one run of a command or one webhook request.
const DefaultHookTimeout = 10 * time.Second

// Hook is one entry of the top-level hooks list: a command (argv, no
// shell) or a webhook URL, run for the listed events of the listed grants
// (all grants when Grants is empty).
type Hook struct {
	Name             string        `yaml:"name"`              // label in logs and metrics; default "hook<index>"
	Events           []string      `yaml:"events"`            // HookEvents
	Grants           []string      `yaml:"grants"`            // optional filter
	Command          []string      `yaml:"command"`           // argv, no shell
	URL              string        `yaml:"url"`               // webhook: https, or http to loopback
	SecretFile       string        `yaml:"secret_file"`       // HMAC key of the webhook's signature
	SecretCredential string        `yaml:"secret_credential"` // …or a systemd credential
	Timeout          time.Duration `yaml:"timeout"`           // one run or request; default 10s

	// Secret is the resolved HMAC key (from SecretFile or SecretCredential).
	Secret oauth.Secret `yaml:"-"`
}

// Label is the hook's name in logs and metrics: its name, or "hook<i>".
// It never contains the URL (which may carry credentials).
func (h Hook) Label(i int) string {
	if h.Name != "" {
		return h.Name
	}
	return "hook" + strconv.Itoa(i)
}

// Wants reports whether h is run for event of grant.
func (h Hook) Wants(event, grant string) bool {
	return slices.Contains(h.Events, event) && (len(h.Grants) == 0 || slices.Contains(h.Grants, grant))
}

func (c *Config) applyHookDefaults() {
	for i := range c.Hooks {
		if c.Hooks[i].Timeout == 0 {
			c.Hooks[i].Timeout = DefaultHookTimeout
		}
	}
}

func (c *Config) validateHooks(p *problems) {
	names := map[string]bool{}
	for i, h := range c.Hooks {
		path := fmt.Sprintf("hooks[%d]", i)
		if h.Name != "" {
			checkName(p, path+".name", h.Name)
			if names[h.Name] {
				p.errorf(path+".name", "%q is the name of another hook", h.Name)
			}
			names[h.Name] = true
		}
		if len(h.Events) == 0 {
			p.errorf(path+".events", "must list at least one of %s", strings.Join(HookEvents, ", "))
		}
		for j, e := range h.Events {
			if !slices.Contains(HookEvents, e) {
				p.errorf(fmt.Sprintf("%s.events[%d]", path, j), "%q is not one of %s", e, strings.Join(HookEvents, ", "))
			}
		}
		for j, g := range h.Grants {
			if _, ok := c.Grants[g]; !ok {
				p.errorf(fmt.Sprintf("%s.grants[%d]", path, j), "grant %q is not defined%s", g, definedList(c.Grants))
			}
		}
		switch {
		case len(h.Command) > 0 && h.URL != "":
			p.errorf(path, "has both a command and a url: use one per hook")
		case len(h.Command) == 0 && h.URL == "":
			p.errorf(path, "needs a command (argv, no shell) or a url (webhook)")
		case len(h.Command) > 0:
			if h.Command[0] == "" {
				p.errorf(path+".command", "the program (first element) is empty")
			}
			if h.SecretFile != "" || h.SecretCredential != "" {
				p.errorf(path, "secret_file and secret_credential sign webhooks; a command hook has no use for them")
			}
		default:
			if err := oauth.CheckEndpointURL(h.URL); err != nil {
				p.errorf(path+".url", "%s", hookURLText(err.Error(), h.URL))
			}
			switch {
			case h.SecretFile != "" && h.SecretCredential != "":
				p.errorf(path, "set secret_file or secret_credential, not both")
			case h.SecretFile == "" && h.SecretCredential == "":
				p.errorf(path, "a webhook needs secret_file or secret_credential: its requests are signed (HMAC-SHA256)")
			case h.SecretFile != "" && !filepath.IsAbs(h.SecretFile):
				p.errorf(path+".secret_file", "%q must be an absolute path", h.SecretFile)
			case h.SecretCredential != "":
				checkCredentialName(p, path+".secret_credential", h.SecretCredential)
			}
		}
		if h.Timeout < 0 {
			p.errorf(path+".timeout", "%s must not be negative", h.Timeout)
		}
	}
}

// hookURLText keeps a webhook URL's user information and query out of a
// message: they may hold credentials.
func hookURLText(msg, raw string) string {
	if s := safeHookURL(raw); s != raw {
		return strings.ReplaceAll(msg, strconv.Quote(raw), strconv.Quote(s))
	}
	return msg
}

// safeHookURL is raw without user information, query or fragment.
func safeHookURL(raw string) string {
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "?…"
	}
	if i := strings.Index(s, "://"); i >= 0 {
		rest := s[i+3:]
		end := strings.IndexAny(rest, "/?")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			s = s[:i+3] + "…@" + rest[at+1:]
		}
	}
	return s
}

func (c *Config) resolveHookSecrets(p *problems) {
	for i := range c.Hooks {
		h := &c.Hooks[i]
		if h.URL == "" || !h.Secret.IsZero() || (h.SecretFile == "" && h.SecretCredential == "") {
			continue
		}
		if h.SecretFile != "" && !filepath.IsAbs(h.SecretFile) {
			continue // reported by validate
		}
		key := fmt.Sprintf("hooks[%d].secret_file", i)
		if h.SecretFile == "" {
			key = fmt.Sprintf("hooks[%d].secret_credential", i)
		}
		if s, ok := readSecret(p, key, h.SecretFile, h.SecretCredential); ok {
			h.Secret = oauth.NewSecret(s)
		}
	}
}

func (c *Config) explainHooks(w io.Writer) {
	if len(c.Hooks) == 0 {
		return // nothing to say: most configurations have none
	}
	fmt.Fprintf(w, "\nhooks (%d):\n", len(c.Hooks))
	for i, h := range c.Hooks {
		grants := "every grant"
		if len(h.Grants) > 0 {
			grants = "grants " + strings.Join(h.Grants, ", ")
		}
		fmt.Fprintf(w, "  %s: on %s of %s; timeout %s\n", h.Label(i), strings.Join(h.Events, ", "), grants, h.Timeout)
		if len(h.Command) > 0 {
			fmt.Fprintf(w, "    runs %s (no shell) with TOKEND_EVENT_* variables (never the token)\n", strconv.Quote(strings.Join(h.Command, " ")))
			continue
		}
		secret := "secret from " + h.SecretFile
		if h.SecretFile == "" {
			secret = "secret from credential " + h.SecretCredential
		}
		fmt.Fprintf(w, "    POSTs a JSON event (never the token) to %s, signed with HMAC-SHA256 (%s); retried with backoff on errors and 5xx\n", safeHookURL(h.URL), secret)
	}
	fmt.Fprintln(w, "  hooks run in the background, in order per hook, and never delay refreshes or fetches;")
	fmt.Fprintln(w, "  one that outlives its timeout is killed")
}
