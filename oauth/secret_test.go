package oauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

type holder struct {
	Exported Secret
	hidden   Secret
	Ptr      *Secret
}

func TestSecretRedaction(t *testing.T) {
	const value = "hunter2-VALUE"
	s := NewSecret(value)
	h := holder{Exported: s, hidden: s, Ptr: &s}
	if s.Reveal() != value {
		t.Fatalf("Reveal = %q", s.Reveal())
	}
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%T"} {
		outputs = append(outputs, fmt.Sprintf(verb, s), fmt.Sprintf(verb, h), fmt.Sprintf(verb, &h), fmt.Sprintf(verb, []Secret{s}), fmt.Sprintf(verb, map[string]Secret{"k": s}))
	}
	outputs = append(outputs, fmt.Sprint(s, h), fmt.Sprintln(s, h), s.String(), s.GoString())

	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if string(j) != `{"Exported":"[REDACTED]","Ptr":"[REDACTED]"}` {
		t.Errorf("json = %s", j)
	}
	outputs = append(outputs, string(j))

	var buf bytes.Buffer
	for _, hd := range []slog.Handler{slog.NewJSONHandler(&buf, nil), slog.NewTextHandler(&buf, nil)} {
		log := slog.New(hd)
		log.Info("m", "secret", s, "holder", h, "ptr", &h, slog.Group("g", "s", s))
	}
	outputs = append(outputs, buf.String())
	if !strings.Contains(buf.String(), `"secret":"[REDACTED]"`) || !strings.Contains(buf.String(), "secret=[REDACTED]") {
		t.Errorf("slog output lacks the redaction: %s", buf.String())
	}

	for _, o := range outputs {
		if strings.Contains(o, value) || strings.Contains(o, fmt.Sprintf("%x", value)) || strings.Contains(o, "hunter") {
			t.Errorf("output reveals the secret: %s", o)
		}
	}
	if got := fmt.Sprintf("%v|%q|%+v", s, s, h.Exported); got != `[REDACTED]|"[REDACTED]"|[REDACTED]` {
		t.Errorf("formatting = %s", got)
	}
}

func TestZeroSecret(t *testing.T) {
	for _, s := range []Secret{{}, NewSecret("")} {
		if !s.IsZero() || s.Reveal() != "" {
			t.Errorf("zero secret: IsZero %v, Reveal %q", s.IsZero(), s.Reveal())
		}
		if got := fmt.Sprintf("%v|%q|%s", s, s, s.String()); got != `|""|` {
			t.Errorf("formatting = %q", got)
		}
		if j, _ := json.Marshal(s); string(j) != `""` {
			t.Errorf("json = %s", j)
		}
	}
	if NewSecret("x").IsZero() {
		t.Error("NewSecret(x).IsZero()")
	}
}

func TestNewStateAndVerifier(t *testing.T) {
	a, b := NewState(), NewState()
	if a == b || len(a) != 43 || strings.ContainsAny(a, "+/=") {
		t.Errorf("states %q %q", a, b)
	}
	v1, v2 := NewVerifier(), NewVerifier()
	if v1.Reveal() == v2.Reveal() || len(v1.Reveal()) != 43 {
		t.Errorf("verifiers of length %d", len(v1.Reveal()))
	}
}
