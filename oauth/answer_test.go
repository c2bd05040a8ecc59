package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenOps are the requests answered by the token endpoint.
var tokenOps = []struct {
	name string
	do   func(ctx context.Context, p *Provider) (*Token, error)
}{
	{"exchange", func(ctx context.Context, p *Provider) (*Token, error) {
		return p.Exchange(ctx, "code-1", NewSecret("verifier-1"), nil)
	}},
	{"refresh", func(ctx context.Context, p *Provider) (*Token, error) {
		return p.Refresh(ctx, NewSecret("rt-1"), nil, nil)
	}},
	{"client_credentials", func(ctx context.Context, p *Provider) (*Token, error) {
		return p.ClientCredentials(ctx, nil, nil)
	}},
	{"password", func(ctx context.Context, p *Provider) (*Token, error) {
		return p.Password(ctx, "alice", NewSecret("pw-1"), nil, nil)
	}},
	{"device", func(ctx context.Context, p *Provider) (*Token, error) {
		// Polls after 1 s of real time (x/oauth2's ticker).
		return p.AwaitDevice(ctx, &DeviceAuth{DeviceCode: NewSecret("dc-1"), Interval: time.Millisecond})
	}},
}

// answer is a raw token endpoint answer.
type answer struct {
	name string
	ct   string // default application/json
	body string
}

// eachTokenOp runs check for every answer and every kind of token request,
// concurrently (the device poll waits 1 s of real time), each against its
// own server. check reports through t.Errorf.
func eachTokenOp(t *testing.T, answers []answer, check func(t *testing.T, name string, a answer, tok *Token, err error)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, a := range answers {
		ct := a.ct
		if ct == "" {
			ct = "application/json"
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ct)
			_, _ = w.Write([]byte(a.body))
		}))
		t.Cleanup(srv.Close)
		for _, o := range tokenOps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := o.do(context.Background(), newTestProvider(srv, AuthPost, newClock()))
				check(t, o.name+": "+a.name, a, tok, err)
			}()
		}
	}
	wg.Wait()
}

// TestTokenAnswerSyntax refuses header injection and duplicate keys: an
// answer whose access_token is not an
// RFC 6750 b64token, whose token_type is not an HTTP token, whose
// refresh_token or id_token is not visible ASCII, or that repeats a key,
// is malformed (Transient, ErrMalformed), for every kind of token request.
// The message names the field and quotes no value.
func TestTokenAnswerSyntax(t *testing.T) {
	answers := []answer{
		{"access_token CRLF", "", `{"access_token":"at\r\nX-Injected: yes","token_type":"Bearer"}`},
		{"access_token LF", "", `{"access_token":"at\nX-Injected: yes"}`},
		{"access_token space", "", `{"access_token":"at X-Injected","token_type":"Bearer"}`},
		{"access_token comma and quote", "", `{"access_token":"at\",X-Injected","token_type":"Bearer"}`},
		{"access_token = inside", "", `{"access_token":"at=X-Injected","token_type":"Bearer"}`},
		{"access_token only =", "", `{"access_token":"==","token_type":"Bearer"}`},
		{"access_token ESC", "", `{"access_token":"at\u001b[2JX-Injected","token_type":"Bearer"}`},
		{"access_token non-ASCII", "", `{"access_token":"atäX-Injected","token_type":"Bearer"}`},
		{"access_token NUL", "", `{"access_token":"at\u0000X-Injected","token_type":"Bearer"}`},
		{"form access_token CRLF", "application/x-www-form-urlencoded", `access_token=at%0D%0AX-Injected%3A+yes&token_type=bearer`},
		{"token_type CRLF", "", `{"access_token":"at","token_type":"Bearer\r\nX-Injected: yes"}`},
		{"token_type space", "", `{"access_token":"at","token_type":"Bearer X-Injected"}`},
		{"token_type ESC", "", `{"access_token":"at","token_type":"Bearer\u001b]0;X-Injected\u0007"}`},
		{"token_type comma", "", `{"access_token":"at","token_type":"Bearer,X-Injected"}`},
		{"refresh_token LF", "", `{"access_token":"at","token_type":"Bearer","refresh_token":"rt\nX-Injected"}`},
		{"refresh_token space", "", `{"access_token":"at","token_type":"Bearer","refresh_token":"rt X-Injected"}`},
		{"refresh_token bidi", "", `{"access_token":"at","token_type":"Bearer","refresh_token":"rt\u202eX-Injected"}`},
		{"id_token ESC", "", `{"access_token":"at","token_type":"Bearer","id_token":"h.p.s\u001b[2JX-Injected"}`},
		{"form refresh_token CR", "text/plain", `access_token=at&refresh_token=rt%0DX-Injected`},

		{"duplicate access_token", "", `{"access_token":"a","access_token":"b","token_type":"Bearer"}`},
		{"duplicate access_token, other case", "", `{"access_token":"a","Access_Token":"b","token_type":"Bearer"}`},
		{"duplicate access_token, Kelvin sign", "", `{"access_token":"a","access_to\u212aen":"b","token_type":"Bearer"}`},
		{"duplicate refresh_token", "", `{"access_token":"a","refresh_token":"r1","token_type":"Bearer","refresh_token":"r2"}`},
		{"duplicate token_type", "", `{"access_token":"a","token_type":"Bearer","token_type":"MAC"}`},
		{"duplicate expires_in", "", `{"access_token":"a","expires_in":3600,"expires_in":1}`},
		{"duplicate id_token", "", `{"access_token":"a","id_token":"x.y.z","id_token":"p.q.r"}`},
		{"duplicate scope", "", `{"access_token":"a","scope":"read","scope":"admin"}`},
		{"form duplicate access_token", "application/x-www-form-urlencoded", `access_token=a&access_token=b&token_type=bearer`},
	}
	eachTokenOp(t, answers, func(t *testing.T, name string, a answer, tok *Token, err error) {
		var e *Error
		if err == nil {
			t.Errorf("%s: accepted: access %q, type %q, refresh %q, id %q", name, tok.AccessToken.Reveal(), tok.TokenType, tok.RefreshToken.Reveal(), tok.IDToken.Reveal())
			return
		}
		if !errors.As(err, &e) || !errors.Is(err, ErrMalformed) || e.Class != Transient || e.Status != 200 {
			t.Errorf("%s: err = %v (%#v)", name, err, err)
			return
		}
		msg := err.Error()
		field := strings.Fields(a.name)[0]
		if field == "form" {
			field = strings.Fields(a.name)[1]
		}
		if field == "duplicate" {
			field = "occurs more than once"
		}
		if !strings.HasPrefix(msg, "oauth: ") || !strings.Contains(msg, field) || strings.Contains(msg, "X-Injected") {
			t.Errorf("%s: message %q", name, msg)
		}
	})
}

// TestTokenAnswerAccepted: the syntax checks accept what providers send,
// and the scope, which reaches terminals, is made printable.
func TestTokenAnswerAccepted(t *testing.T) {
	answers := []answer{
		{"b64token with every character", "", `{"access_token":"AZaz09-._~+/==","token_type":"bearer","refresh_token":"rt!#$%&'()*+,-./:;<=>?@[\\]^_{|}~","id_token":"h.p.s","scope":"read write"}`},
		{"JWT", "", `{"access_token":"eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl","token_type":"Bearer","scope":"read write"}`},
		{"no token_type", "", `{"access_token":"at","scope":"read write"}`},
		{"scope with escapes", "", `{"access_token":"at","token_type":"Bearer","scope":"read\u001b]0;x\u0007 \u202ewrite\u0085\u2066"}`},
		{"form scope with escapes", "application/x-www-form-urlencoded", `access_token=at&token_type=bearer&scope=read%1B%5B2J+%E2%80%AEwrite%C2%9B`},
		{"nested duplicates are not top-level", "", `{"access_token":"at","x":{"a":1,"a":2},"scope":"read write"}`},
	}
	eachTokenOp(t, answers, func(t *testing.T, name string, a answer, tok *Token, err error) {
		if err != nil {
			t.Errorf("%s: %v", name, err)
			return
		}
		want := "read write"
		switch {
		case strings.Contains(a.name, "escapes") && a.ct == "":
			want = "read]0;x write"
		case strings.Contains(a.name, "escapes"):
			want = "read[2J write"
		}
		if tok.Scope != want {
			t.Errorf("%s: Scope = %q, want %q", name, tok.Scope, want)
		}
		if !isB64token(tok.AccessToken.Reveal()) || !isHTTPToken(tok.TokenType) {
			t.Errorf("%s: %q %q", name, tok.AccessToken.Reveal(), tok.TokenType)
		}
	})
}

// TestDeviceAnswer: what the device authorization endpoint returns is shown
// to a person and may be opened in a browser (so no file:///etc/passwd
// for `--open`, and no terminal escapes), and a repeated key makes it
// ambiguous.
func TestDeviceAnswer(t *testing.T) {
	const ok = `"device_code":"dc-1","user_code":"ABCD-EFGH","verification_uri":"https://id.example.com/device"`
	cases := []struct {
		name, body  string
		malformed   string // the field named in the message; "" for accepted
		user, v, vc string
	}{
		{"plain", `{` + ok + `,"verification_uri_complete":"https://id.example.com/device?c=ABCD"}`, "", "ABCD-EFGH", "https://id.example.com/device", "https://id.example.com/device?c=ABCD"},
		{"user_code escapes", `{"device_code":"dc","user_code":"AB\u001b[8mCD\u202e-\u009bEF\u0007","verification_uri":"https://v.example/d"}`, "", "AB[8mCD-EF", "https://v.example/d", ""},
		{"verification_uri escapes", `{"device_code":"dc","user_code":"U","verification_uri":"https://v.example/\u202ed\u001b","verification_uri_complete":"https://v.example/\u2066d?x\u0085"}`, "", "U", "https://v.example/d", "https://v.example/d?x"},
		{"verification_uri file", `{"device_code":"dc","user_code":"U","verification_uri":"file:///etc/passwd"}`, "verification_uri", "", "", ""},
		{"verification_uri javascript", `{"device_code":"dc","user_code":"U","verification_uri":"javascript:alert(1)"}`, "verification_uri", "", "", ""},
		{"verification_uri relative", `{"device_code":"dc","user_code":"U","verification_uri":"/device"}`, "verification_uri", "", "", ""},
		{"verification_uri option", `{"device_code":"dc","user_code":"U","verification_uri":"--help"}`, "verification_uri", "", "", ""},
		{"verification_url file (Google's name)", `{"device_code":"dc","user_code":"U","verification_url":"file:///etc/passwd"}`, "verification_uri", "", "", ""},
		{"verification_uri_complete file", `{` + ok + `,"verification_uri_complete":"file:///etc/passwd"}`, "verification_uri_complete", "", "", ""},
		{"verification_uri_complete ssh", `{` + ok + `,"verification_uri_complete":"ssh://id.example.com/"}`, "verification_uri_complete", "", "", ""},
		{"user_code only controls", `{"device_code":"dc","user_code":"\u001b\u0007\u202e","verification_uri":"https://v.example/d"}`, "user_code", "", "", ""},
		{"device_code CRLF", `{"device_code":"dc\r\nX","user_code":"U","verification_uri":"https://v.example/d"}`, "device_code", "", "", ""},
		{"duplicate device_code", `{` + ok + `,"device_code":"dc-2"}`, "occurs more than once", "", "", ""},
		{"duplicate user_code", `{` + ok + `,"user_code":"EVIL-CODE"}`, "occurs more than once", "", "", ""},
		{"duplicate verification_uri", `{` + ok + `,"Verification_URI":"https://evil.example/"}`, "occurs more than once", "", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			da, err := newTestProvider(srv, AuthPost, newClock()).StartDevice(context.Background(), nil, nil)
			if c.malformed != "" {
				var e *Error
				if !errors.As(err, &e) || !errors.Is(err, ErrMalformed) || e.Class != Transient || e.Op != "device" || !strings.Contains(err.Error(), c.malformed) {
					t.Fatalf("err = %v, DeviceAuth %+v", err, da)
				}
				if strings.Contains(err.Error(), "passwd") || strings.Contains(err.Error(), "EVIL") {
					t.Errorf("message quotes the answer: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if da.UserCode != c.user || da.VerificationURI != c.v || da.VerificationURIComplete != c.vc {
				t.Errorf("DeviceAuth = %q %q %q, want %q %q %q", da.UserCode, da.VerificationURI, da.VerificationURIComplete, c.user, c.v, c.vc)
			}
		})
	}
}

// TestRegistrationAnswer: the values of a registration answer that tokend
// sends, stores or prints (printable text, no cleartext URLs to another
// host), and repeated keys.
func TestRegistrationAnswer(t *testing.T) {
	cases := []struct {
		name, body string
		class      Class
		malformed  bool
		contains   string // "" for accepted
	}{
		{"duplicate client_id", `{"client_id":"c1","client_secret":"s","client_id":"c2"}`, Transient, true, "occurs more than once"},
		{"duplicate client_secret", `{"client_id":"c1","client_secret":"s1","CLIENT_SECRET":"s2"}`, Transient, true, "occurs more than once"},
		{"client_id ESC", `{"client_id":"c\u001b[2J1"}`, Transient, true, "client_id"},
		{"client_id bidi", `{"client_id":"c\u202e1"}`, Transient, true, "client_id"},
		{"client_secret LF", `{"client_id":"c","client_secret":"s\nX"}`, Transient, true, "client_secret"},
		{"registration_access_token CRLF", `{"client_id":"c","registration_access_token":"rat\r\nX: y"}`, Transient, true, "registration_access_token"},
		{"registration_client_uri file", `{"client_id":"c","registration_client_uri":"file:///etc/passwd"}`, Transient, true, "registration_client_uri"},
		{"registration_client_uri bidi", `{"client_id":"c","registration_client_uri":"https://id.example.com/\u202ereg"}`, Transient, true, "registration_client_uri"},
		{"registration_client_uri http", `{"client_id":"c","registration_access_token":"rat","registration_client_uri":"http://id.example.com/reg/c"}`, Configuration, false,
			`registration_client_uri "http://id.example.com/reg/c" uses http to a non-loopback host: use https`},
		{"registration_client_uri loopback http", `{"client_id":"c","registration_client_uri":"http://127.0.0.1:9/reg/c","token_endpoint_auth_method":"client_secret_basic\u001b[2J"}`, 0, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(201)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			reg, err := Register(context.Background(), srv.Client(), srv.URL+"/register", RegistrationRequest{ClientName: "x"})
			if c.contains == "" {
				if err != nil {
					t.Fatal(err)
				}
				if reg.RegistrationClientURI != "http://127.0.0.1:9/reg/c" || reg.AuthMethod != "client_secret_basic[2J" {
					t.Errorf("Registration %+v", reg)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Op != "register" || e.Class != c.class || errors.Is(err, ErrMalformed) != c.malformed || !strings.Contains(err.Error(), c.contains) {
				t.Errorf("err = %v (%#v), Registration %+v", err, err, reg)
			}
		})
	}
}

func TestB64tokenAndHTTPToken(t *testing.T) {
	for s, want := range map[string]bool{"a": true, "a==": true, "AZaz09-._~+/": true, "": false, "=": false, "a=b": false, "a b": false, "a\n": false, "ä": false, "a,b": false} {
		if isB64token(s) != want {
			t.Errorf("isB64token(%q) = %v", s, !want)
		}
	}
	for s, want := range map[string]bool{"Bearer": true, "DPoP": true, "N_A": true, "!#$%&'*+-.^_`|~": true, "": false, "a b": false, "a,b": false, "a/b": false, "a=": false, "Bearer\r\n": false} {
		if isHTTPToken(s) != want {
			t.Errorf("isHTTPToken(%q) = %v", s, !want)
		}
	}
}

func TestDuplicateKey(t *testing.T) {
	for _, c := range []struct {
		body string
		form bool
		want string
	}{
		{`{"a":1,"b":{"a":2},"c":[{"a":3}]}`, false, ""},
		{`{"a":1,"b":2,"a":3}`, false, `"a"`},
		{`{"k":1,"\u212a":2}`, false, "\"\u212a\""},
		{`{"a":1,"A":2}`, false, `"A"`},
		{`{"a\u001b[2J":1,"A\u001b[2J":2}`, false, `"A[2J"`},
		{`[1,1]`, false, ""},
		{`{"a":1,`, false, ""},
		{`a=1&b=2`, true, ""},
		{`a=1&b=2&a=3`, true, `"a"`},
	} {
		if got := duplicateKey([]byte(c.body), c.form); got != c.want {
			t.Errorf("duplicateKey(%s) = %s, want %s", c.body, got, c.want)
		}
	}
}
