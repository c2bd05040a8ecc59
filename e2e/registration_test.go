package e2e

import (
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil/oidcop"
)

// TestDynamicRegistration: a client with no client_id is registered at the
// provider (RFC 7591) once, and the grant is then obtained with it; a
// restart uses the stored registration instead of registering again.
func TestDynamicRegistration(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	t.Run("client_credentials", func(t *testing.T) {
		t.Parallel()
		o := oidcop.Start(t, oidcop.Config{})
		s := NewSetup(t)
		td := StartTokend(t, s, s.Config(o.Issuer, `  dyn:
    provider: op
    client_name: tokend e2e
`, `  api:
    client: dyn
    type: client_credentials
    scopes: [api:read]
    {{READERS}}
`))
		tok := td.WaitToken("api", 20*time.Second)
		in := o.Introspect(tok.AccessToken)
		if !in.Active || in.ClientID == "" {
			t.Fatalf("introspection = %+v", in)
		}
		st := o.Stats()
		if st.Registrations != 1 || st.TokenSuccess["client_credentials"] < 1 {
			t.Fatalf("provider stats = %+v, want one registration and a client_credentials token", st)
		}

		td.Restart()
		td.MustCLI("refresh", "api")
		tok2 := td.MustToken("api")
		in2 := o.Introspect(tok2.AccessToken)
		if tok2.AccessToken == tok.AccessToken || !in2.Active || in2.ClientID != in.ClientID {
			t.Errorf("after restart and refresh: new token %t, introspection %+v, want active for %s",
				tok2.AccessToken != tok.AccessToken, in2, in.ClientID)
		}
		if st := o.Stats(); st.Registrations != 1 {
			t.Errorf("registrations after restart = %d, want 1", st.Registrations)
		}
	})
	t.Run("authorization_code", func(t *testing.T) {
		t.Parallel()
		o := oidcop.Start(t, oidcop.Config{AccessTokenTTL: 60})
		s := NewSetup(t)
		td := StartTokend(t, s, s.Config(o.Issuer, `  dyn:
    provider: op
    client_name: tokend e2e
    redirect_uri: `+s.CallbackURL+`
`, `  web:
    client: dyn
    type: authorization_code
    scopes: [openid]
    {{READERS}}
`))
		authorizeInBrowser(t, o, td, "web")
		tok := td.WaitToken("web", 10*time.Second)
		in := o.Introspect(tok.AccessToken)
		if !in.Active || in.Sub != "e2e-user" {
			t.Fatalf("introspection = %+v", in)
		}
		td.Restart()
		td.MustCLI("refresh", "web")
		tok2 := td.MustToken("web")
		if in2 := o.Introspect(tok2.AccessToken); tok2.AccessToken == tok.AccessToken || !in2.Active || in2.ClientID != in.ClientID {
			t.Errorf("after restart and refresh: new token %t, introspection %+v", tok2.AccessToken != tok.AccessToken, in2)
		}
		if st := o.Stats(); st.Registrations != 1 || st.InvalidGrant != 0 {
			t.Errorf("provider stats = %+v, want one registration, no invalid_grant", st)
		}
	})
}
