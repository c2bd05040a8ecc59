package store

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// redacted stands in for a secret value when a record is printed.
const redacted = "[REDACTED]"

// secretMark shows whether a secret is set without showing it.
func secretMark(v string) string {
	if v == "" {
		return ""
	}
	return redacted
}

// field is one name/value pair of a record as printed.
type field struct {
	name   string
	value  any
	secret bool
}

func (t Token) fields() []field {
	return []field{
		{"Grant", t.Grant, false},
		{"AccessToken", t.AccessToken, true},
		{"RefreshToken", t.RefreshToken, true},
		{"IDToken", t.IDToken, true},
		{"DPoPKey", t.DPoPKey, true},
		{"TokenType", t.TokenType, false},
		{"Scope", t.Scope, false},
		{"Obtained", t.Obtained, false},
		{"Expiry", t.Expiry, false},
		{"RefreshExpiry", t.RefreshExpiry, false},
		{"RefreshIssued", t.RefreshIssued, false},
		{"Generation", t.Generation, false},
		{"State", t.State, false},
		{"StateSince", t.StateSince, false},
		{"LastError", t.LastError, false},
		{"LastErrorCode", t.LastErrorCode, false},
		{"LastAttempt", t.LastAttempt, false},
		{"LastSuccess", t.LastSuccess, false},
		{"Failures", t.Failures, false},
		{"Auth", t.Auth, false},
		{"AuthAt", t.AuthAt, false},
	}
}

func (c Client) fields() []field {
	return []field{
		{"Name", c.Name, false},
		{"Provider", c.Provider, false},
		{"ClientID", c.ClientID, false},
		{"ClientSecret", c.ClientSecret, true},
		{"AuthMethod", c.AuthMethod, false},
		{"RedirectURI", c.RedirectURI, false},
		{"RegistrationAccessToken", c.RegistrationAccessToken, true},
		{"RegistrationClientURI", c.RegistrationClientURI, false},
		{"SecretExpiresAt", c.SecretExpiresAt, false},
		{"Registered", c.Registered, false},
	}
}

// The state of a pending authorization is what the callback presents to
// redeem it, so it is redacted along with the verifier and device code.
func (p Pending) fields() []field {
	return []field{
		{"State", p.State, true},
		{"Grant", p.Grant, false},
		{"Kind", p.Kind, false},
		{"Verifier", p.Verifier, true},
		{"Nonce", p.Nonce, false},
		{"RedirectURI", p.RedirectURI, false},
		{"Created", p.Created, false},
		{"Deadline", p.Deadline, false},
		{"DeviceCode", p.DeviceCode, true},
		// Hashes of 256-bit random values: they redeem nothing.
		{"StartHash", p.StartHash, false},
		{"BindingHash", p.BindingHash, false},
	}
}

// format prints fields as {Name:value ...} (goSyntax false) or as
// store.Type{Name:"value", ...} (goSyntax true). Secrets are never printed.
func format(typ string, fs []field, goSyntax bool) string {
	var b strings.Builder
	if goSyntax {
		b.WriteString("store." + typ)
	}
	b.WriteByte('{')
	for i, f := range fs {
		if i > 0 {
			if goSyntax {
				b.WriteString(", ")
			} else {
				b.WriteByte(' ')
			}
		}
		b.WriteString(f.name)
		b.WriteByte(':')
		v := f.value
		if f.secret {
			v = secretMark(f.value.(string))
		}
		switch v := v.(type) {
		case time.Time:
			if goSyntax {
				fmt.Fprintf(&b, "%q", v.Format(time.RFC3339Nano))
			} else {
				b.WriteString(v.Format(time.RFC3339Nano))
			}
		case string:
			if goSyntax {
				fmt.Fprintf(&b, "%q", v)
			} else {
				b.WriteString(v)
			}
		default:
			fmt.Fprint(&b, v)
		}
	}
	b.WriteByte('}')
	return b.String()
}

func logValue(fs []field) slog.Value {
	attrs := make([]slog.Attr, 0, len(fs))
	for _, f := range fs {
		if f.secret {
			attrs = append(attrs, slog.String(f.name, secretMark(f.value.(string))))
			continue
		}
		attrs = append(attrs, slog.Any(f.name, f.value))
	}
	return slog.GroupValue(attrs...)
}

// String returns the token with its secrets redacted; fmt uses it for %v,
// %+v and %s.
func (t Token) String() string { return format("Token", t.fields(), false) }

// GoString returns the token with its secrets redacted; fmt uses it for %#v.
func (t Token) GoString() string { return format("Token", t.fields(), true) }

// LogValue implements slog.LogValuer: the token logs with its secrets redacted.
func (t Token) LogValue() slog.Value { return logValue(t.fields()) }

// String returns the client with its secrets redacted.
func (c Client) String() string { return format("Client", c.fields(), false) }

// GoString returns the client with its secrets redacted.
func (c Client) GoString() string { return format("Client", c.fields(), true) }

// LogValue implements slog.LogValuer: the client logs with its secrets redacted.
func (c Client) LogValue() slog.Value { return logValue(c.fields()) }

// String returns the pending authorization with its state, verifier and
// device code redacted.
func (p Pending) String() string { return format("Pending", p.fields(), false) }

// GoString returns the pending authorization with its secrets redacted.
func (p Pending) GoString() string { return format("Pending", p.fields(), true) }

// LogValue implements slog.LogValuer: the pending authorization logs with
// its secrets redacted.
func (p Pending) LogValue() slog.Value { return logValue(p.fields()) }

var (
	_ fmt.Stringer   = Token{}
	_ fmt.GoStringer = Token{}
	_ slog.LogValuer = Token{}
	_ fmt.Stringer   = Client{}
	_ fmt.GoStringer = Client{}
	_ slog.LogValuer = Client{}
	_ fmt.Stringer   = Pending{}
	_ fmt.GoStringer = Pending{}
	_ slog.LogValuer = Pending{}
)
