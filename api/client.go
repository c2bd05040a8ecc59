package api

// The client of the local API, used by the command line, tests and
// programs written in Go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// maxResponse bounds every response body read from the socket.
const maxResponse = 1 << 20

// Client talks to a running tokend over its unix socket. The zero value is
// not usable; call NewClient. A Client is safe for concurrent use.
//
// Its errors start with "tokend:" rather than the package name because the
// command line prints them as they are, to people who know the program,
// not the package.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client of the socket at socketPath. Requests carry no
// timeout of their own: a fetch of an expired token waits for the refresh,
// so bound them with the context.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns: 2,
	}
	return &Client{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// SocketPath returns the socket the client connects to.
func (c *Client) SocketPath() string { return c.socket }

// Error is an error answer of the API: the HTTP status and the JSON
// ErrorResponse's error code (one of the Code constants) and description.
type Error struct {
	Status      int
	Code        string
	Description string
}

func (e *Error) Error() string {
	switch {
	case e.Description != "" && e.Code != "":
		return fmt.Sprintf("tokend: %s (%s)", e.Description, e.Code)
	case e.Description != "":
		return fmt.Sprintf("tokend: %s (HTTP %d)", e.Description, e.Status)
	case e.Code != "":
		return fmt.Sprintf("tokend: %s (HTTP %d)", e.Code, e.Status)
	default:
		return fmt.Sprintf("tokend: HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
}

// Token fetches a grant's current access token (GET /v1/tokens/{name}).
func (c *Client) Token(ctx context.Context, name string) (*TokenResponse, error) {
	var out TokenResponse
	if err := c.do(ctx, http.MethodGet, name, "", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RawToken fetches the bare access token (GET /v1/tokens/{name}?format=raw).
func (c *Client) RawToken(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", errors.New("tokend: no grant name given")
	}
	q := url.Values{"format": {"raw"}}
	body, err := c.request(ctx, http.MethodGet, name, "", q, "text/plain")
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(body), "\r\n"), nil
}

// List returns every grant the caller may see (GET /v1/tokens).
func (c *Client) List(ctx context.Context) (*TokenList, error) {
	var out TokenList
	body, err := c.request(ctx, http.MethodGet, "", "", nil, "application/json")
	if err != nil {
		return nil, err
	}
	if err := decodeAnswer(body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Status returns a grant's state and refresh history (GET
// /v1/tokens/{name}/status).
func (c *Client) Status(ctx context.Context, name string) (*GrantStatus, error) {
	return call[GrantStatus](ctx, c, http.MethodGet, name, "status")
}

// Authorize starts obtaining a grant's token (POST
// /v1/tokens/{name}/authorize): a URL to open, a device code to enter, or,
// for grants that need no person, the resulting status.
func (c *Client) Authorize(ctx context.Context, name string) (*AuthorizeResponse, error) {
	return call[AuthorizeResponse](ctx, c, http.MethodPost, name, "authorize")
}

// Refresh refreshes a grant's token now (POST /v1/tokens/{name}/refresh).
func (c *Client) Refresh(ctx context.Context, name string) (*GrantStatus, error) {
	return call[GrantStatus](ctx, c, http.MethodPost, name, "refresh")
}

// Revoke revokes a grant's tokens at the provider and forgets them (POST
// /v1/tokens/{name}/revoke).
func (c *Client) Revoke(ctx context.Context, name string) (*GrantStatus, error) {
	return call[GrantStatus](ctx, c, http.MethodPost, name, "revoke")
}

// DPoP returns the grant's DPoP-bound access token and a fresh proof for
// one request, req.Method to req.URL (POST /v1/tokens/{name}/dpop). The
// same readers may ask as for Token; a grant without dpop is an *Error
// with Code CodeDPoPNotEnabled. Send the answer as "Authorization: DPoP
// <AccessToken>" and "DPoP: <DPoP>"; a proof is good for that one request.
func (c *Client) DPoP(ctx context.Context, name string, req DPoPRequest) (*DPoPResponse, error) {
	return postJSON[DPoPResponse](ctx, c, name, "dpop", req)
}

// call does one request about a grant and decodes its answer into a T.
func call[T any](ctx context.Context, c *Client, method, name, action string) (*T, error) {
	var out T
	if err := c.do(ctx, method, name, action, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) do(ctx context.Context, method, name, action string, q url.Values, out any) error {
	if name == "" {
		return errors.New("tokend: no grant name given")
	}
	body, err := c.request(ctx, method, name, action, q, "application/json")
	if err != nil {
		return err
	}
	return decodeAnswer(body, out)
}

func decodeAnswer(body []byte, out any) error {
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("tokend: malformed answer from the daemon: %w", err)
	}
	return nil
}

// request sends one request and returns the body of a 2xx answer; other
// answers become *Error.
func (c *Client) request(ctx context.Context, method, name, action string, q url.Values, accept string) ([]byte, error) {
	u := &url.URL{Scheme: "http", Host: "tokend", Path: "/v1/tokens"}
	if name != "" {
		u.Path += "/" + name
		u.RawPath = "/v1/tokens/" + url.PathEscape(name)
		if action != "" {
			u.Path += "/" + action
			u.RawPath += "/" + action
		}
	}
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return c.send(ctx, method, u, accept, nil)
}

// send sends one request to u, with body as JSON unless it is nil, and
// returns the body of a 2xx answer; other answers become *Error.
func (c *Client) send(ctx context.Context, method string, u *url.URL, accept string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("tokend: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "tokend-cli")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("tokend: reading the answer: %w", err)
	}
	if len(answer) > maxResponse {
		return nil, fmt.Errorf("tokend: the answer is larger than %d bytes", maxResponse)
	}
	if resp.StatusCode/100 == 2 {
		return answer, nil
	}
	return nil, errorFrom(resp.StatusCode, answer)
}

// Reload asks the daemon to read its configuration file again (POST
// /v1/reload, operators only) and returns once the new configuration is in
// effect. An invalid file is an *Error with Status 422 (Code
// CodeInvalidConfiguration) whose Description is the file's error; the
// running configuration stays.
func (c *Client) Reload(ctx context.Context) (*ReloadResponse, error) {
	body, err := c.send(ctx, http.MethodPost, &url.URL{Scheme: "http", Host: "tokend", Path: "/v1/reload"}, "application/json", nil)
	if err != nil {
		return nil, err
	}
	var out ReloadResponse
	if err := decodeAnswer(body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// errorFrom is the *Error of an answer with status that is not a success.
func errorFrom(status int, body []byte) *Error {
	e := &Error{Status: status}
	var er ErrorResponse
	if json.Unmarshal(body, &er) == nil && er.Error != "" {
		e.Code, e.Description = er.Error, er.ErrorDescription
	} else {
		// Not the API's JSON (a proxy, a crash, a daemon too old to know
		// the path): show its first line.
		line, _, _ := strings.Cut(string(bytes.TrimSpace(body)), "\n")
		if len(line) > 200 {
			line = line[:200]
		}
		e.Description = line
	}
	return e
}

// dialError turns a failure to reach the socket into a message that says
// what to do.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("tokend: %w", err)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return &connError{"tokend: cannot connect to " + c.socket + ": is tokend running?", err}
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return &connError{"tokend: permission denied on " + c.socket + ": " + socketAccessCause(c.socket), err}
	}
	return fmt.Errorf("tokend: talking to %s: %w", c.socket, err)
}

// connError is a short message for people that keeps the cause for errors.Is.
type connError struct {
	msg string
	err error
}

func (e *connError) Error() string { return e.msg }
func (e *connError) Unwrap() error { return e.err }

// Access modes of access(2).
const (
	accessExecute = 1
	accessWrite   = 2
)

// socketAccessCause says why connecting to the socket at path was
// refused: a directory on the way the caller may not enter (then the
// socket's own group does not help), or the socket itself, which only its
// owner and group may write to.
func socketAccessCause(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	dir := filepath.Dir(abs)
	var dirs []string
	for d := dir; ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if syscall.Access(dirs[i], accessExecute) == syscall.EACCES {
			return fmt.Sprintf("you may not enter the directory %s (%s), so neither the socket's mode nor its group (listen.socket_group) can let you in; ask an operator to open that directory to you or to run tokend with its socket elsewhere", dirs[i], fileOwnership(dirs[i]))
		}
	}
	if syscall.Access(abs, accessWrite) == syscall.EACCES {
		var st syscall.Stat_t
		if syscall.Stat(abs, &st) == nil {
			return fmt.Sprintf("the socket (%s) lets in its owner and group only; ask an operator to add you to group %s (listen.socket_group)", fileOwnership(abs), groupName(st.Gid))
		}
	}
	return "ask an operator to add you to the socket's group (listen.socket_group), and check that its directory is open to you"
}

// fileOwnership is "mode 0750, owner root, group tokend" for path.
func fileOwnership(path string) string {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "cannot be examined: " + err.Error()
	}
	owner := strconv.FormatUint(uint64(st.Uid), 10)
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	return fmt.Sprintf("mode %#o, owner %s, group %s", st.Mode&0o7777, owner, groupName(st.Gid))
}

func groupName(gid uint32) string {
	g := strconv.FormatUint(uint64(gid), 10)
	if gr, err := user.LookupGroupId(g); err == nil {
		return gr.Name
	}
	return g
}
