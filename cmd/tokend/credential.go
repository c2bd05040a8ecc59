package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tokend/tokend/api"
)

// cmdCredential is `tokend credential git|kubectl|docker|headers`: the
// credential helper protocols of git, kubectl's exec plugins, docker and
// MCP clients' headers helpers, answered
// from the socket. The helpers are clients like any other: the caller gets
// only tokens of grants it may read.
func (c *cli) cmdCredential(ctx context.Context, args []string, stdin io.Reader) int {
	fs := c.flagSet("credential", "credential git (get|store|erase) | kubectl NAME | docker (get|list|store|erase) | headers NAME  [--socket PATH] [--timeout DURATION]")
	cf := c.addClientFlags(fs)
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return c.usageErr(fs, "credential: name the helper: git, kubectl, docker or headers")
	}
	helper, rest := pos[0], pos[1:]
	cl, ctx, cancel := c.client(ctx, cf)
	defer cancel()
	switch helper {
	case "git":
		if len(rest) != 1 {
			return c.usageErr(fs, "credential git: give one action (get, store or erase), as git does")
		}
		return c.gitCredential(ctx, cl, rest[0], stdin)
	case "kubectl":
		if len(rest) != 1 || rest[0] == "" {
			return c.usageErr(fs, "credential kubectl: give the grant NAME")
		}
		return c.kubectlCredential(ctx, cl, rest[0])
	case "docker":
		if len(rest) != 1 {
			return c.usageErr(fs, "credential docker: give one action (get, list, store or erase), as docker does")
		}
		return c.dockerCredential(ctx, cl, rest[0], stdin)
	case "headers":
		if len(rest) != 1 || rest[0] == "" {
			return c.usageErr(fs, "credential headers: give the grant NAME")
		}
		return c.headersCredential(ctx, cl, rest[0])
	default:
		return c.usageErr(fs, "credential: unknown helper %q: git, kubectl, docker or headers", helper)
	}
}

// helperToken fetches a grant's token for a helper and checks that it can
// be written into the helper's answer as it is.
func (c *cli) helperToken(ctx context.Context, cl *api.Client, name string) (*api.TokenResponse, int) {
	t, err := cl.Token(ctx, name)
	if err != nil {
		return nil, c.failGrant(name, err)
	}
	if !isBearerToken(t.AccessToken) {
		c.printErr(fmt.Errorf("tokend: the token of %s has characters outside RFC 6750's token syntax (a malformed provider answer); not passing it on", text(name)))
		return nil, exitError
	}
	return t, exitOK
}

// matchGrant finds the grant the caller may read whose match list covers
// rawURL (longest prefix). The daemon lists only grants the caller may
// read, so a caller learns nothing of the others: "no grant you may read"
// is all a non-reader is told.
func (c *cli) matchGrant(ctx context.Context, cl *api.Client, rawURL string) (*api.GrantStatus, int) {
	list, err := cl.List(ctx)
	if err != nil {
		return nil, c.fail(err)
	}
	g, _, err := api.MatchGrant(list.Grants, rawURL)
	if errors.Is(err, api.ErrAmbiguousPath) {
		// Answered as "no match": the URL may be another tenant's
		// (team-a/../other-team), so no prefix's token goes there.
		fmt.Fprintf(c.stderr, "tokend: no grant matches %s: %v\n", text(rawURL), api.ErrAmbiguousPath)
		return nil, exitForbidden
	}
	if err != nil {
		c.printErr(fmt.Errorf("tokend: %w", err))
		return nil, exitError
	}
	if g == nil {
		fmt.Fprintf(c.stderr, "tokend: no grant you may read has a match prefix covering %s (see match: in the grants of tokend's configuration)\n", text(rawURL))
		return nil, exitForbidden
	}
	return g, exitOK
}

// gitCredential speaks git's credential helper protocol
// (gitcredentials(7)): for get, attributes on stdin up to a blank line,
// and username and password on stdout. store and erase are accepted and
// ignored: tokend owns the token's life.
func (c *cli) gitCredential(ctx context.Context, cl *api.Client, action string, stdin io.Reader) int {
	attrs, err := readGitAttrs(stdin)
	if err != nil {
		c.printErr(fmt.Errorf("tokend: credential git: reading git's request: %w", err))
		return exitError
	}
	switch action {
	case "store", "erase":
		return exitOK
	case "get":
	default:
		// gitcredentials(7): ignore actions you do not know.
		return exitOK
	}
	u := attrs["url"]
	if u == "" {
		if attrs["protocol"] == "" || attrs["host"] == "" {
			c.printErr(errors.New("tokend: credential git: git sent no protocol and host"))
			return exitError
		}
		u = attrs["protocol"] + "://" + attrs["host"] + "/" + strings.TrimPrefix(attrs["path"], "/")
	}
	g, code := c.matchGrant(ctx, cl, u)
	if g == nil {
		// Exit 0 with no answer: git goes on to its next helper or
		// prompt; the message above says why this one had nothing.
		if code == exitForbidden {
			return exitOK
		}
		return code
	}
	t, code := c.helperToken(ctx, cl, g.Name)
	if t == nil {
		return code
	}
	fmt.Fprintf(c.stdout, "username=%s\npassword=%s\n", g.MatchUsername, t.AccessToken)
	if !t.ExpiresAt.IsZero() {
		// git 2.41+ does not keep an expired password in its caches.
		fmt.Fprintf(c.stdout, "password_expiry_utc=%d\n", t.ExpiresAt.Unix())
	}
	return exitOK
}

// readGitAttrs reads key=value lines up to a blank line or the end.
func readGitAttrs(r io.Reader) (map[string]string, error) {
	attrs := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		attrs[k] = v
	}
	return attrs, sc.Err()
}

// kubectlCredential prints an ExecCredential for kubeconfig's exec
// plugin, in the apiVersion kubectl names in KUBERNETES_EXEC_INFO
// (client.authentication.k8s.io/v1 or v1beta1; v1 when it names none).
func (c *cli) kubectlCredential(ctx context.Context, cl *api.Client, name string) int {
	version := "client.authentication.k8s.io/v1"
	if info := c.getenv("KUBERNETES_EXEC_INFO"); info != "" {
		var req struct {
			APIVersion string `json:"apiVersion"`
		}
		if err := json.Unmarshal([]byte(info), &req); err != nil {
			c.printErr(fmt.Errorf("tokend: credential kubectl: KUBERNETES_EXEC_INFO is not JSON: %w", err))
			return exitError
		}
		switch req.APIVersion {
		case "client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1":
			version = req.APIVersion
		case "":
		default:
			c.printErr(fmt.Errorf("tokend: credential kubectl: kubectl asks for %s; tokend speaks client.authentication.k8s.io/v1 and v1beta1", text(req.APIVersion)))
			return exitError
		}
	}
	t, code := c.helperToken(ctx, cl, name)
	if t == nil {
		return code
	}
	type status struct {
		Token               string `json:"token"`
		ExpirationTimestamp string `json:"expirationTimestamp,omitempty"`
	}
	out := struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Status     status `json:"status"`
	}{version, "ExecCredential", status{Token: t.AccessToken}}
	if !t.ExpiresAt.IsZero() {
		out.Status.ExpirationTimestamp = t.ExpiresAt.UTC().Format(time.RFC3339)
	}
	return c.writeJSONLine(out)
}

// headersCredential prints the HTTP headers of a request with grant
// name's token as one JSON object, {"Authorization": "Bearer …"}: the
// headersHelper convention of MCP clients (Claude Code runs the command
// and adds the headers to its requests to the server). A DPoP-bound
// token needs a fresh proof for each request, which a helper run once per
// connection cannot give: the proxy (tokend proxy, or the grant's proxy:
// listen) can.
func (c *cli) headersCredential(ctx context.Context, cl *api.Client, name string) int {
	t, code := c.helperToken(ctx, cl, name)
	if t == nil {
		return code
	}
	if strings.EqualFold(t.TokenType, "DPoP") {
		c.printErr(fmt.Errorf("tokend: credential headers: grant %s has DPoP-bound tokens, which need a fresh proof for each request that a headers helper cannot give: point the MCP client at the proxy instead (tokend proxy, or proxy: {listen: …} in the grant)", text(name)))
		return exitError
	}
	return c.writeJSONLine(map[string]string{"Authorization": "Bearer " + t.AccessToken})
}

func (c *cli) writeJSONLine(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		c.printErr(fmt.Errorf("tokend: %w", err))
		return exitError
	}
	fmt.Fprintf(c.stdout, "%s\n", b)
	return exitOK
}

// dockerHelperName is the name docker runs for `"credsStore": "tokend"`
// or `"credHelpers": {"registry": "tokend"}`: a link to tokend of that name
// is `tokend credential docker`.
const dockerHelperName = "docker-credential-tokend"

// dockerNotFound is the answer docker-credential-helpers' protocol gives
// for a server it has nothing for (credentials.errCredentialsNotFound).
const dockerNotFound = "credentials not found in native keychain"

// dockerCredential speaks the docker-credential-helpers protocol: get
// (the server URL on stdin, {"ServerURL","Username","Secret"} on stdout),
// list ({server URL: username}); store and erase are refused, since tokend
// obtains its tokens itself.
func (c *cli) dockerCredential(ctx context.Context, cl *api.Client, action string, stdin io.Reader) int {
	switch action {
	case "get":
		b, err := io.ReadAll(io.LimitReader(stdin, 64<<10))
		if err != nil {
			c.printErr(fmt.Errorf("tokend: credential docker: reading the server URL: %w", err))
			return exitError
		}
		server := strings.TrimSpace(string(b))
		if server == "" {
			fmt.Fprintln(c.stdout, "no credentials server URL")
			return exitError
		}
		g, code := c.matchGrant(ctx, cl, server)
		if g == nil {
			if code == exitForbidden {
				// The protocol's "not found": docker then goes on without
				// credentials; the message on stderr says why.
				fmt.Fprintln(c.stdout, dockerNotFound)
				return exitError
			}
			return code
		}
		t, code := c.helperToken(ctx, cl, g.Name)
		if t == nil {
			return code
		}
		return c.writeJSONLine(struct {
			ServerURL string `json:"ServerURL"`
			Username  string `json:"Username"`
			Secret    string `json:"Secret"`
		}{server, g.MatchUsername, t.AccessToken})
	case "list":
		list, err := cl.List(ctx)
		if err != nil {
			return c.fail(err)
		}
		out := map[string]string{}
		for _, g := range list.Grants {
			for _, m := range g.Match {
				out[m] = g.MatchUsername
			}
		}
		return c.writeJSONLine(out)
	case "store", "erase":
		_, _ = io.Copy(io.Discard, io.LimitReader(stdin, 1<<20))
		msg := "tokend: credential docker: " + action + " is refused: tokend obtains and renews these tokens itself from its grants (match: in its configuration); docker login/logout cannot change them"
		// The protocol reads the message from stdout; people read stderr.
		fmt.Fprintln(c.stdout, msg)
		fmt.Fprintln(c.stderr, msg)
		return exitError
	case "version":
		fmt.Fprintln(c.stdout, "tokend "+versionString())
		return exitOK
	default:
		c.printErr(fmt.Errorf("tokend: credential docker: unknown action %s: get, list, store or erase", strconv.Quote(action)))
		return exitUsage
	}
}

// stdinOf is the process's standard input (a variable so tests can
// replace it).
var stdinOf io.Reader = os.Stdin
