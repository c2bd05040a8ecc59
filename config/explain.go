package config

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

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
	if c.Store.FleetMode() {
		fmt.Fprintf(w, "store:     %s (%s)\n", c.fleetSummary(), sealed)
	} else {
		fmt.Fprintf(w, "store:     %s (%s)\n", c.Store.Path, sealed)
	}
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
	for _, name := range sortedKeys(c.Providers) {
		pv := c.Providers[name]
		if r := pv.Resource; r != nil {
			fmt.Fprintf(w, "  %s: discovered from protected resource %s\n", name, r.Resource)
			continue
		}
		if pv.Issuer != "" {
			fmt.Fprintf(w, "  %s: discovery from %s\n", name, pv.Issuer)
		} else {
			fmt.Fprintf(w, "  %s: explicit endpoints\n", name)
		}
		explicit := false
		for _, e := range []struct{ k, v string }{
			{"authorization", pv.AuthorizationEndpoint},
			{"token", pv.TokenEndpoint},
			{"revocation", pv.RevocationEndpoint},
			{"device authorization", pv.DeviceAuthorizationEndpoint},
			{"registration", pv.RegistrationEndpoint},
		} {
			if e.v != "" {
				fmt.Fprintf(w, "    %-21s %s\n", e.k+":", e.v)
				explicit = true
			}
		}
		if explicit && pv.Issuer != "" {
			fmt.Fprintf(w, "    (used as written: discovery and its mTLS aliases never replace them)\n")
		}
		if pv.CAFile != "" {
			fmt.Fprintf(w, "    %-21s %s\n", "CA bundle:", pv.CAFile)
		}
	}

	fmt.Fprintf(w, "\nclients (%d):\n", len(c.Clients))
	for _, name := range sortedKeys(c.Clients) {
		cl := c.Clients[name]
		if cl.ForGrant != "" {
			fmt.Fprintf(w, "  %s: provider %s, registered at runtime (client metadata document or dynamic registration)\n", name, cl.Provider)
			if cl.RedirectURI != "" {
				fmt.Fprintf(w, "    redirect_uri: %s\n", cl.RedirectURI)
			}
			continue
		}
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
		if how, ok := explainClientAuth(cl); ok {
			secret = how
		}
		if cl.Anonymous() {
			id = "no client_id"
		}
		fmt.Fprintf(w, "  %s: provider %s, %s, %s, %s\n", name, cl.Provider, id, cl.AuthMethod, secret)
		if cl.RedirectURI != "" {
			fmt.Fprintf(w, "    redirect_uri: %s\n", cl.RedirectURI)
		}
		if cl.AssertionAudience != "" {
			fmt.Fprintf(w, "    assertion audience: %s\n", cl.AssertionAudience)
		}
	}

	fmt.Fprintf(w, "\ngrants (%d):\n", len(c.Grants))
	for _, name := range sortedKeys(c.Grants) {
		g := c.Grants[name]
		provider := c.Clients[g.Client].Provider
		fmt.Fprintf(w, "  %s: %s via client %s (provider %s)\n", name, g.Type, g.Client, provider)
		if len(g.Scopes) > 0 {
			fmt.Fprintf(w, "    scopes:   %s\n", strings.Join(g.Scopes, " "))
		}
		if g.Type == GrantPassword {
			fmt.Fprintf(w, "    username: %s\n", g.Username)
		}
		c.explainExtGrant(func(format string, args ...any) { fmt.Fprintf(w, format, args...) }, g)
		c.explainResource(func(format string, args ...any) { fmt.Fprintf(w, format, args...) }, name, g)
		readers := strings.TrimPrefix(readersText(g.Readers, "; "), "; ")
		if readers == "" {
			readers = "root and operators only"
		}
		fmt.Fprintf(w, "    readers:  %s\n", readers)
		explainMatch(w, g)
		if g.RefreshTokenLifetime > 0 {
			fmt.Fprintf(w, "    refresh token lifetime (assumed): %s\n", g.RefreshTokenLifetime)
		}
		if !g.Schedule.IsZero() {
			fmt.Fprintf(w, "    schedule: %q, next forced refresh %s\n", g.Schedule, g.Schedule.Next(now).Format(time.RFC3339))
		}
		explainSinks(w, g.Sinks)
		if g.Proxy != nil {
			fmt.Fprintf(w, "    proxy:    %s -> %s, for the readers (by group over a unix socket only)\n", g.Proxy.Listen, g.ProtectedResource)
		}
	}
	c.explainHooks(w)
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
