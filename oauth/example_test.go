package oauth_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/tokend/tokend/oauth"
)

func ExampleProvider_ClientCredentials() {
	// A provider that issues a one-hour token to client "reports" with
	// secret "s3cret", sent with HTTP Basic.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "reports" || secret != "s3cret" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"at-123","token_type":"bearer","expires_in":3600,"scope":"reports:read"}`)
	}))
	defer srv.Close()

	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	p := &oauth.Provider{
		Endpoints: oauth.Endpoints{Token: srv.URL + "/token"},
		Client:    oauth.Client{ID: "reports", Secret: oauth.NewSecret("s3cret"), AuthMethod: oauth.AuthBasic},
		Now:       func() time.Time { return now },
	}
	tok, err := p.ClientCredentials(context.Background(), []string{"reports:read"}, oauth.Params{"audience": "https://reports.example.com"})
	if err != nil {
		fmt.Println(err, oauth.ClassOf(err))
		return
	}
	fmt.Println(tok.TokenType, tok.Scope, tok.Expiry.Format(time.RFC3339))
	fmt.Printf("printed: %v, revealed: %s\n", tok.AccessToken, tok.AccessToken.Reveal())

	p.Client.Secret = oauth.NewSecret("wrong")
	_, err = p.ClientCredentials(context.Background(), nil, nil)
	fmt.Println(err, oauth.ClassOf(err))
	// Output:
	// Bearer reports:read 2030-01-02T04:04:05Z
	// printed: [REDACTED], revealed: at-123
	// oauth: client_credentials: invalid_client (HTTP 401) credentials
}

func ExampleDiscoverResource() {
	// One server plays an MCP server at /mcp, which answers 401 with a
	// challenge naming its metadata, and its authorization server at /as.
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	jsonAnswer := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, strings.ReplaceAll(body, "BASE", srv.URL))
		}
	}
	mux.HandleFunc("POST /mcp", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", resource_metadata="`+srv.URL+`/.well-known/oauth-protected-resource/mcp", scope="notes:read"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	mux.HandleFunc("/.well-known/oauth-protected-resource/mcp", jsonAnswer(`{"resource":"BASE/mcp","authorization_servers":["BASE/as"],"scopes_supported":["notes:read","notes:write"]}`))
	mux.HandleFunc("/.well-known/oauth-authorization-server/as", jsonAnswer(`{"issuer":"BASE/as","authorization_endpoint":"BASE/as/authorize","token_endpoint":"BASE/as/token",
		"registration_endpoint":"BASE/as/register","scopes_supported":["notes:read","notes:write","offline_access"],"token_endpoint_auth_methods_supported":["none","client_secret_post"]}`))

	d, err := oauth.DiscoverResource(context.Background(), srv.Client(), srv.URL+"/mcp", oauth.ResourceOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	short := func(u string) string { return strings.TrimPrefix(u, srv.URL) }
	fmt.Println("resource:", short(d.Resource))
	fmt.Println("issuer:", short(d.Issuer), "token endpoint:", short(d.Endpoints.Token))
	fmt.Println("scopes:", d.Scopes(nil))
	m, _ := oauth.ChooseAuthMethod(d.TokenEndpointAuthMethods, true)
	fmt.Println("register with:", m)
	// Output:
	// resource: /mcp
	// issuer: /as token endpoint: /as/token
	// scopes: [notes:read offline_access]
	// register with: client_secret_post
}
