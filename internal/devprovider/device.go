package devprovider

import (
	"crypto/rand"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

type deviceStatus int

const (
	devicePending deviceStatus = iota
	deviceApproved
	deviceDenied
	deviceConsumed
)

// deviceAuth is one RFC 8628 device authorization.
type deviceAuth struct {
	clientID, scope, userCode string
	expires                   time.Time
	interval                  time.Duration // grows by 5 s on each slow_down
	lastPoll                  time.Time
	status                    deviceStatus
}

// Errors of ApproveDevice and DenyDevice.
var (
	ErrUnknownUserCode = errors.New("devprovider: unknown user code")
	ErrDeviceExpired   = errors.New("devprovider: device authorization expired")
	ErrDeviceDecided   = errors.New("devprovider: device authorization already approved or denied")
)

// handleDevice is the device authorization endpoint: any registered client,
// authenticated per its method, gets a device code and a user code.
func (s *Server) handleDevice(w http.ResponseWriter, r *http.Request) {
	form, e := parseForm(w, r)
	if e != nil {
		writeError(w, e)
		return
	}
	if f, ok := s.takeFault(EndpointDevice, ""); ok && s.applyFault(w, r, f) {
		return
	}
	c, e := s.authenticate(w, r, form)
	if e != nil {
		writeError(w, e)
		return
	}
	iss := s.issuer(r)
	dc := newSecret("dc_")
	interval := time.Duration(ceilSeconds(s.opts.DeviceInterval)) * time.Second
	now := s.now()
	d := &deviceAuth{clientID: c.ID, scope: form.Get("scope"), expires: now.Add(deviceTTL), interval: interval}
	s.mu.Lock()
	for {
		d.userCode = newUserCode()
		if _, taken := s.userCodes[normalizeUserCode(d.userCode)]; !taken {
			break
		}
	}
	s.devices[dc] = d
	s.userCodes[normalizeUserCode(d.userCode)] = d
	s.recordLocked(dc)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"device_code":               dc,
		"user_code":                 d.userCode,
		"verification_uri":          iss + "/device/verify",
		"verification_uri_complete": iss + "/device/verify?user_code=" + url.QueryEscape(d.userCode),
		"expires_in":                ceilSeconds(deviceTTL),
		"interval":                  ceilSeconds(interval),
	})
}

func (s *Server) deviceGrant(c *clientState, form url.Values, now time.Time, at, rt string, alter FaultKind, iss, jkt string) (*tokenResponse, *oauthError) {
	value := form.Get("device_code")
	if value == "" {
		return nil, invalidRequest("missing device_code")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[value]
	if !ok || d.clientID != c.ID {
		return nil, invalidGrant("unknown device_code")
	}
	if !now.Before(d.expires) {
		return nil, errorf(http.StatusBadRequest, "expired_token", "the device code has expired")
	}
	last := d.lastPoll
	d.lastPoll = now
	if !last.IsZero() && now.Sub(last) < d.interval && d.status != deviceConsumed {
		d.interval += 5 * time.Second
		return nil, errorf(http.StatusBadRequest, "slow_down", "polling too fast")
	}
	switch d.status {
	case devicePending:
		return nil, errorf(http.StatusBadRequest, "authorization_pending", "the user has not approved yet")
	case deviceDenied:
		return nil, errorf(http.StatusBadRequest, "access_denied", "the user denied the request")
	case deviceConsumed:
		return nil, invalidGrant("device code already used")
	}
	d.status = deviceConsumed
	g := grant{client: c, grantType: GrantDeviceCode, jkt: jkt, subject: Subject, scope: d.scope, refresh: true}
	return s.issueLocked(g, now, at, rt, alter, iss), nil
}

// ApproveDevice approves the device authorization with this user code
// (case and dashes ignored), as the user would on the verification page.
func (s *Server) ApproveDevice(userCode string) error {
	return s.decideDevice(userCode, deviceApproved)
}

// DenyDevice denies the device authorization with this user code: the
// next poll answers access_denied.
func (s *Server) DenyDevice(userCode string) error {
	return s.decideDevice(userCode, deviceDenied)
}

func (s *Server) decideDevice(userCode string, st deviceStatus) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.userCodes[normalizeUserCode(userCode)]
	switch {
	case !ok:
		return ErrUnknownUserCode
	case !now.Before(d.expires):
		return ErrDeviceExpired
	case d.status != devicePending:
		return ErrDeviceDecided
	}
	d.status = st
	return nil
}

var verifyPage = template.Must(template.New("verify").Parse(`<!doctype html>
<html><head><title>devprovider: device</title></head>
<body>
{{if .Message}}<p>{{.Message}}</p>{{else}}
<h1>Connect a device</h1>
<p>This is the tokend development provider: approving signs the device in as <code>{{.Subject}}</code>.</p>
<form method="post" action="/device/verify">
<label>Code <input name="user_code" value="{{.UserCode}}"></label>
<button type="submit" name="action" value="approve">Approve</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>{{end}}
</body></html>
`))

// handleVerifyPage shows the user-code form, or with AutoApprove and a
// user_code in the query, approves at once.
func (s *Server) handleVerifyPage(w http.ResponseWriter, r *http.Request) {
	uc := r.URL.Query().Get("user_code")
	msg := ""
	if s.opts.AutoApprove && uc != "" {
		msg = verifyMessage(s.ApproveDevice(uc), "approved")
	}
	renderVerify(w, uc, msg)
}

func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "devprovider: malformed form", http.StatusBadRequest)
		return
	}
	uc := r.PostForm.Get("user_code")
	var msg string
	if r.PostForm.Get("action") == "approve" {
		msg = verifyMessage(s.ApproveDevice(uc), "approved")
	} else {
		msg = verifyMessage(s.DenyDevice(uc), "denied")
	}
	renderVerify(w, "", msg)
}

func verifyMessage(err error, done string) string {
	if err != nil {
		return strings.TrimPrefix(err.Error(), "devprovider: ")
	}
	return "Device " + done + ". You may close this page."
}

func renderVerify(w http.ResponseWriter, userCode, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	verifyPage.Execute(w, map[string]string{"UserCode": userCode, "Message": msg, "Subject": Subject})
}

// userCodeAlphabet has no vowels (no words) and no look-alikes (RFC 8628
// §6.1).
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

func newUserCode() string {
	var b [8]byte
	rand.Read(b[:])
	out := make([]byte, 0, 9)
	for i, v := range b {
		if i == 4 {
			out = append(out, '-')
		}
		out = append(out, userCodeAlphabet[int(v)%len(userCodeAlphabet)])
	}
	return string(out)
}

func normalizeUserCode(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ':
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
}
