package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/oauth"
)

// cmdToken prints a grant's access token: bare (for $(...) in shell), or
// the whole JSON answer with --json. With --dpop METHOD URL it prints the
// two header lines of one DPoP request instead.
func (c *cli) cmdToken(ctx context.Context, args []string) int {
	fs := c.flagSet("token", "token NAME [--socket PATH] [--json] [--timeout DURATION] [--dpop METHOD URL [--nonce NONCE]]")
	cf := c.addClientFlags(fs)
	asJSON := fs.Bool("json", false, "print the JSON answer (access_token, token_type, expires_in, expires_at, scope)")
	dpop := fs.String("dpop", "", "print the `METHOD` URL request's headers of a dpop grant: Authorization: DPoP … and DPoP: <proof>")
	nonce := fs.String("nonce", "", "with --dpop: the DPoP-Nonce the resource server gave")
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return code
	}
	if *dpop != "" || *nonce != "" {
		return c.tokenDPoP(ctx, fs, cf, pos, *dpop, *nonce, *asJSON)
	}
	name, code, ok := c.oneName(fs, pos)
	if !ok {
		return code
	}
	cl, ctx, cancel := c.client(ctx, cf)
	defer cancel()
	if *asJSON {
		t, err := cl.Token(ctx, name)
		if err != nil {
			return c.failGrant(name, err)
		}
		return c.printJSON(t)
	}
	tok, err := cl.RawToken(ctx, name)
	if err != nil {
		return c.failGrant(name, err)
	}
	// The token goes into shells and Authorization headers as it is
	// printed: one that could end a header line or drive the terminal is
	// refused, not repaired (a repaired token would be a wrong one).
	if !isBearerToken(tok) {
		c.printErr(fmt.Errorf("tokend: the token of %s has characters outside RFC 6750's token syntax (a malformed provider answer); not printing it", text(name)))
		return exitError
	}
	fmt.Fprintln(c.stdout, tok)
	return exitOK
}

// tokenDPoP is tokend token NAME --dpop METHOD URL [--nonce N]: exactly
// two lines, the headers of the one request the proof is for.
func (c *cli) tokenDPoP(ctx context.Context, fs *flag.FlagSet, cf *clientFlags, pos []string, method, nonce string, asJSON bool) int {
	switch {
	case method == "":
		return c.usageErr(fs, "token: --nonce goes with --dpop METHOD URL")
	case len(pos) == 0:
		return c.usageErr(fs, "token: missing grant NAME")
	case len(pos) == 1:
		return c.usageErr(fs, "token: --dpop needs METHOD and URL (tokend token NAME --dpop GET https://api.example/x)")
	case len(pos) > 2:
		return c.usageErr(fs, "token: unexpected argument %q", text(pos[2]))
	case asJSON:
		return c.usageErr(fs, "token: --json and --dpop do not go together")
	}
	name, target := pos[0], pos[1]
	cl, ctx, cancel := c.client(ctx, cf)
	defer cancel()
	r, err := cl.DPoP(ctx, name, api.DPoPRequest{Method: method, URL: target, Nonce: nonce})
	if err != nil {
		var ae *api.Error
		if errors.As(err, &ae) && ae.Code == api.CodeDPoPNotEnabled {
			c.printErr(fmt.Errorf("tokend: grant %s does not use DPoP (dpop: true in its configuration); print its token without --dpop", text(name)))
			return exitError
		}
		return c.failGrant(name, err)
	}
	// Both go into header lines as printed: refused, not repaired.
	if !isBearerToken(r.AccessToken) || !isBearerToken(r.DPoP) {
		c.printErr(fmt.Errorf("tokend: the token or proof of %s has characters a header cannot carry (a malformed provider answer); not printing it", text(name)))
		return exitError
	}
	fmt.Fprintf(c.stdout, "Authorization: DPoP %s\nDPoP: %s\n", r.AccessToken, r.DPoP)
	return exitOK
}

// isBearerToken reports whether s is RFC 6750 §2.1's b64token: 1*( ALPHA /
// DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=". Nothing else can be
// sent as a bearer token, and none of it is a control character.
func isBearerToken(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~+/", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// failGrant is fail with a hint for a grant that needs a person.
func (c *cli) failGrant(name string, err error) int {
	code := exitCode(err)
	if code == exitReauth && !strings.Contains(err.Error(), "authorize") {
		fmt.Fprintf(c.stderr, "%s; an operator must run: %s\n", text(err.Error()), c.hint("authorize", name))
		return code
	}
	c.printErr(err)
	return code
}

func (c *cli) printJSON(v any) int {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		c.printErr(fmt.Errorf("tokend: %w", err))
		return exitError
	}
	fmt.Fprintf(c.stdout, "%s\n", escapeUnprintable(b))
	return exitOK
}

// escapeUnprintable writes, as \uXXXX escapes, the characters of JSON text
// b that a terminal would act on: encoding/json escapes C0 controls in
// strings, but writes C1 controls (U+0080-U+009F, which some terminals take
// as escape sequences), bidi overrides and U+FFFD raw. The escaped JSON
// decodes to the same values, so --json output stays exact for programs
// and harmless on a terminal. Outside strings b has only printable ASCII
// and the indentation's spaces and newlines.
func escapeUnprintable(b []byte) []byte {
	out := make([]byte, 0, len(b)+32)
	for _, r := range string(b) {
		if r == '\n' || r > 0xffff || oauth.Printable(string(r)) != "" {
			out = utf8.AppendRune(out, r)
			continue
		}
		out = fmt.Appendf(out, `\u%04x`, r)
	}
	return out
}
