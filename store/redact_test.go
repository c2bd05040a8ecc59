package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
)

func TestRecordsRedactThemselves(t *testing.T) {
	sc := newSecrets("rd")
	secretsToHide := append(sc.values(), sc.pending.State)
	type wrapper struct {
		Tok     Token
		Client  *Client
		Pending Pending
	}
	values := []any{sc.tok, &sc.tok, sc.client, &sc.client, sc.pending, &sc.pending,
		wrapper{sc.tok, &sc.client, sc.pending}, []Token{sc.tok}}

	var out bytes.Buffer
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		fmt.Fprintln(&out, v)
	}
	for _, h := range []slog.Handler{slog.NewTextHandler(&out, nil), slog.NewJSONHandler(&out, nil)} {
		log := slog.New(h)
		log.Info("records", "token", sc.tok, "client", sc.client, "pending", sc.pending)
		log.Info("pointers", "token", &sc.tok, slog.Any("client", &sc.client))
	}
	text := out.String()
	for _, s := range secretsToHide {
		if strings.Contains(text, s) {
			t.Errorf("secret %q printed", s)
		}
	}
	// The output is still useful, and shows that the values were there.
	for _, want := range []string{"[REDACTED]", sc.tok.Grant, sc.client.ClientID, "DPoP", "device_code"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

// Every field shows up when printed, so a field added to a record must be
// added to its fields method, where it is marked secret or not.
func TestRedactionCoversEveryField(t *testing.T) {
	var tok Token
	fill(&tok)
	var c Client
	fill(&c)
	var p Pending
	fill(&p)
	for _, v := range []any{tok, c, p} {
		s := fmt.Sprintf("%#v", v)
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			if !strings.Contains(s, typ.Field(i).Name+":") {
				t.Errorf("%s.%s missing from %s", typ.Name(), typ.Field(i).Name, s)
			}
		}
	}
	// Empty secrets print as empty, so "no refresh token" is visible.
	if s := (Token{Grant: "g"}).String(); strings.Contains(s, "[REDACTED]") {
		t.Errorf("empty secrets shown as redacted: %s", s)
	}
}
