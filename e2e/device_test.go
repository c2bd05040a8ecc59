package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/internal/testutil/oidcop"
)

// userCodeRe matches oidc-provider's user codes (base-20 charset, mask
// ****-****).
var userCodeRe = regexp.MustCompile(`\b[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}\b`)

// deviceClient is oidc-provider's registration of the device flow client
// "tv" authenticating with method, and secret unless it is empty.
func deviceClient(method, secret string) map[string]any {
	client := map[string]any{
		"client_id":                  "tv",
		"grant_types":                []string{"urn:ietf:params:oauth:grant-type:device_code", "refresh_token"},
		"response_types":             []string{},
		"redirect_uris":              []string{},
		"token_endpoint_auth_method": method,
	}
	if secret != "" {
		client["client_secret"] = secret
	}
	return client
}

// TestDeviceFlow: tokend authorize prints a user code and the verification
// URI; once the user approves, tokend's polling gets the token. A public
// client and a confidential one (which must authenticate at the device
// authorization endpoint, RFC 8628 §3.1).
func TestDeviceFlow(t *testing.T) {
	t.Parallel()
	requireTokend(t)
	for _, c := range []authClient{{"none", ""}, {"client_secret_basic", "tv-secret-e2e-0123456789"}} {
		t.Run(c.method, func(t *testing.T) {
			t.Parallel()
			o := oidcop.Start(t, oidcop.Config{AccessTokenTTL: 60, Clients: []map[string]any{deviceClient(c.method, c.secret)}})
			s := NewSetup(t)
			cl := fmt.Sprintf("  tv:\n    provider: op\n    client_id: tv\n    auth_method: %s\n", c.method)
			if c.secret != "" {
				cl += fmt.Sprintf("    client_secret_file: %s\n", s.SecretFile("tv", c.secret))
			}
			td := StartTokend(t, s, s.Config(o.Issuer, cl, `  tv:
    client: tv
    type: device_code
    scopes: [openid]
    {{READERS}}
`))
			if c.secret != "" {
				td.NoLeak(c.secret)
			}

			cli := td.StartCLI("authorize", "tv")
			userCode := cli.WaitOutput(userCodeRe, 20*time.Second)[0]
			if !strings.Contains(cli.Output(), o.Issuer+"/device") {
				t.Errorf("tokend authorize did not print the verification URI %s/device:\n%s", o.Issuer, cli.Output())
			}
			approveDevice(t, o.Issuer, userCode)
			tok := td.WaitToken("tv", 30*time.Second)
			if in := o.Introspect(tok.AccessToken); !in.Active || in.ClientID != "tv" || in.Sub != "e2e-user" {
				t.Errorf("introspection = %+v", in)
			}
			if code := cli.Wait(30 * time.Second); code != 0 {
				t.Errorf("tokend authorize exited %d:\n%s", code, cli.Output())
			}
			if st := td.Status("tv"); !st.HasRefreshToken {
				t.Errorf("status = %+v, want a refresh token", st)
			}
			st := o.Stats()
			if st.InvalidGrant != 0 || st.TokenSuccess["urn:ietf:params:oauth:grant-type:device_code"] != 1 || st.DeviceAuthorizations != 1 {
				t.Errorf("provider stats = %+v, want one device authorization and one device_code token", st)
			}
		})
	}
}
