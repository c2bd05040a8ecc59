package e2e

import (
	"net/http"
	"testing"
	"time"
)

// TestRevoke: tokend revoke revokes the grant at the provider (RFC 7009):
// afterwards the provider says the access token is inactive and no refresh
// token of the client is active, and tokend no longer serves the token.
func TestRevoke(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	c := authClients[0]
	o, _, td := startCodeTokend(t, c, 60)
	authorizeInBrowser(t, o, td, "web")
	tok := td.WaitToken("web", 10*time.Second)
	if !o.Introspect(tok.AccessToken).Active || o.RefreshTokens("app").Active != 1 {
		t.Fatalf("before revoke: access token active %t, refresh tokens %+v",
			o.Introspect(tok.AccessToken).Active, o.RefreshTokens("app"))
	}

	td.MustCLI("revoke", "web")
	if o.Introspect(tok.AccessToken).Active {
		t.Errorf("access token still active after tokend revoke")
	}
	if rt := o.RefreshTokens("app"); rt.Active != 0 {
		t.Errorf("refresh tokens after tokend revoke = %+v, want none active", rt)
	}
	if st := o.Stats(); st.Revocations < 1 || st.RevocationErrors != 0 {
		t.Errorf("provider stats = %+v, want a revocation, no errors", st)
	}
	if got, status, _ := td.Token("web"); status == http.StatusOK && got.AccessToken == tok.AccessToken {
		t.Errorf("tokend still serves the revoked token")
	}
}
