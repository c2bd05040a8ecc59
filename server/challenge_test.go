package server

import (
	"strings"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	for _, c := range []struct {
		header      []string
		rejects     bool
		scope       string
		nonceWanted bool
	}{
		{[]string{`Bearer error="invalid_token", error_description="expired"`}, true, "", false},
		{[]string{`Bearer realm="x"`}, true, "", false},
		{[]string{`Bearer`}, true, "", false},
		{[]string{`Basic realm="x"`}, false, "", false},
		{[]string{`Basic abc==, Bearer error=invalid_token`}, true, "", false},
		{[]string{`Basic realm="a, b", DPoP error="use_dpop_nonce", algs="ES256"`}, false, "", true},
		{[]string{`Basic realm="x"`, `DPoP algs="ES256"`}, true, "", false},
		{[]string{`Bearer error="insufficient_scope", scope="a b"`}, false, "a b", false},
		{[]string{`Bearer error="insufficient_scope", scope="a \"q\" b"`}, false, `a "q" b`, false},
		{[]string{`Bearer error="insufficient_scope"`}, false, "", false},
		{[]string{`Bearer error="insufficient_scope", scope="unterminated`}, false, "", false},
		{[]string{`Negotiate`}, false, "", false},
		{[]string{``}, false, "", false},
		{[]string{strings.Repeat("x", 64<<10)}, false, "", false},
	} {
		cs := parseChallenges(c.header)
		scope, _ := cs.insufficientScope()
		if cs.rejectsToken() != c.rejects || scope != c.scope || cs.has("dpop", "use_dpop_nonce") != c.nonceWanted {
			t.Errorf("%.60q: rejects %v scope %q nonce %v; parsed %+v", c.header, cs.rejectsToken(), scope, cs.has("dpop", "use_dpop_nonce"), cs.list)
		}
		if len(cs.raw) > maxChallenge {
			t.Errorf("raw challenge kept at %d bytes", len(cs.raw))
		}
	}
}
