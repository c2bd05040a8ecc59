package config

import (
	"errors"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/tokend/tokend/oauth"
)

func TestParseFileMode(t *testing.T) {
	tests := []struct {
		in   string
		want os.FileMode
		ok   bool
	}{
		{"0660", 0o660, true},
		{"660", 0o660, true},
		{"0o660", 0o660, true},
		{"0O640", 0o640, true},
		{"600", 0o600, true},
		{"0777", 0o777, true},
		{"0000", 0, true},
		{"01777", 0, false},
		{"0980", 0, false},
		{"0o", 0, false},
		{"-660", 0, false},
		{"+660", 0, false},
		{"0x1b0", 0, false},
		{"rw-rw----", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseFileMode(tt.in)
		if (err == nil) != tt.ok || got.Perm() != tt.want || got.IsZero() == tt.ok {
			t.Errorf("ParseFileMode(%q) = %v (zero %v), %v", tt.in, got, got.IsZero(), err)
		}
	}
}

// The file's socket_mode comes out as a FileMode, whatever way of writing
// octal the file used: quoted or not, with 0, 0o or no prefix. An explicit
// 0000 stays 0000 (only root may connect), not the default.
func TestConfigSocketModeForms(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  os.FileMode
	}{
		{`"0660"`, 0o660},
		{`"660"`, 0o660},
		{`"0o660"`, 0o660},
		{`0o660`, 0o660},
		{`0660`, 0o660},
		{`640`, 0o640},
		{`"0600"`, 0o600},
		{`"0000"`, 0},
		{`""`, 0o660},
		{`~`, 0o660},
	} {
		c, _, err := parse(minimal + "listen:\n  socket_mode: " + tt.value + "\n")
		if err != nil {
			t.Errorf("socket_mode: %s: %v", tt.value, err)
			continue
		}
		if got := c.Listen.SocketMode; got.Perm() != tt.want || got.IsZero() {
			t.Errorf("socket_mode: %s = %v, want %04o", tt.value, got, tt.want)
		}
	}
}

func TestMode(t *testing.T) {
	if m := Mode(0o600); m.Perm() != 0o600 || m.IsZero() || m.String() != "0600" {
		t.Errorf("Mode(0600) = %v", m)
	}
	if m := Mode(0); m.IsZero() || m.String() != "0000" {
		t.Errorf("Mode(0) = %v, zero %v", m, m.IsZero())
	}
	defer func() {
		if recover() == nil {
			t.Error("Mode(01777) did not panic")
		}
	}()
	Mode(0o1777)
}

func TestParseSchedule(t *testing.T) {
	from := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		spec string
		next time.Time // zero: invalid
	}{
		{"@every 15s", from.Add(15 * time.Second)},
		{"0 3 * * *", time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)},
		{"@daily", time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)},
		{"*/20 * * * *", from.Add(20 * time.Minute)},
		{"CRON_TZ=UTC 0 3 * * *", time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)},
		{"0 3 * * * *", time.Time{}}, // six fields: seconds are not accepted
		{"@fortnightly", time.Time{}},
		{"TZ=0", time.Time{}}, // robfig/cron panics on it
		{"CRON_TZ=UTC\t0 3 * * *", time.Time{}},
		{"", time.Time{}},
	}
	for _, tt := range tests {
		s, err := ParseSchedule(tt.spec)
		if tt.next.IsZero() {
			if err == nil {
				t.Errorf("ParseSchedule(%q) accepted", tt.spec)
			} else if !strings.HasPrefix(err.Error(), "config: invalid schedule") {
				t.Errorf("ParseSchedule(%q): %v", tt.spec, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", tt.spec, err)
			continue
		}
		if got := s.Next(from); !got.Equal(tt.next) || s.String() != tt.spec || s.IsZero() {
			t.Errorf("ParseSchedule(%q) = %v, Next = %v, want %v", tt.spec, s, got, tt.next)
		}
	}
	var zero Schedule
	if !zero.IsZero() || !zero.Next(from).IsZero() {
		t.Error("the zero Schedule is not unset")
	}
	c := mustParse(t, minimal+"    schedule: \"0 3 * * *\"\n  h: {client: app, type: device_code, schedule: \"\"}\n")
	if s := c.Grants["g"].Schedule; !s.Next(from).Equal(tests[1].next) {
		t.Errorf("grants.g.schedule = %v", s)
	}
	if s := c.Grants["h"].Schedule; !s.IsZero() {
		t.Errorf("an empty grants.h.schedule = %v, want unset", s)
	}
}

func TestConfigReadersResolved(t *testing.T) {
	db := baseAccounts().with(map[string]string{"alice": "1500"}, map[string]string{"ops": "1600"})
	yml := minimal + "    readers: {users: [alice, \"4242\"], groups: [ops, \"4343\"], uids: [1000], gids: [1001]}\n"
	yml = strings.Replace(yml, "    readers: {users: [root]}\n", "", 1)
	c, _, err := db.loader().Parse([]byte(yml), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	uids, gids, err := c.Grants["g"].Readers.IDs()
	if err != nil {
		t.Fatal(err)
	}
	// A name that is all digits and names no user is a number.
	if len(uids) != 3 || uids[0] != 1500 || uids[1] != 4242 || uids[2] != 1000 {
		t.Errorf("uids = %v", uids)
	}
	if len(gids) != 3 || gids[0] != 1600 || gids[1] != 4343 || gids[2] != 1001 {
		t.Errorf("gids = %v", gids)
	}

	// The lookup is done at load, never after: a Readers built in code
	// that names users fails until validated.
	r := Readers{Users: []string{"root"}, UIDs: []int{7}}
	if _, _, err := r.IDs(); err == nil || !strings.Contains(err.Error(), "never resolved") {
		t.Errorf("unresolved IDs() = %v", err)
	}
	if uids, _, err := (Readers{UIDs: []int{7}}).IDs(); err != nil || len(uids) != 1 || uids[0] != 7 {
		t.Errorf("numeric IDs() = %v, %v", uids, err)
	}
	if _, _, err := (Readers{GIDs: []int{-1}}).IDs(); err == nil {
		t.Error("IDs() took gid -1")
	}
	if gid, err := (Listen{SocketGroup: "adm"}).SocketGID(); err == nil || gid != -1 {
		t.Errorf("unresolved SocketGID() = %d, %v", gid, err)
	}

	// Lookup failures other than "unknown" are reported as such.
	broken := Loader{
		LookupUser:  func(string) (*user.User, error) { return nil, errors.New("nss is down") },
		LookupGroup: func(string) (*user.Group, error) { return &user.Group{Gid: "x"}, nil },
	}
	_, _, err = broken.Parse([]byte(minimal+"operators: {groups: [wheel]}\n"), "x.yaml")
	wantProblems(t, err,
		`x.yaml:13: grants.g.readers.users[0]: looking up user "root": nss is down`,
		`x.yaml:14: operators.groups[0]: group "wheel" has a non-numeric gid "x"`)
}

// The zero Loader looks names up in the system's user database, where
// root always exists.
func TestConfigSystemAccounts(t *testing.T) {
	c, _, err := Parse([]byte(minimal+"operators: {groups: [root]}\nlisten: {socket_group: root}\n"), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if uids, _, err := c.Grants["g"].Readers.IDs(); err != nil || len(uids) != 1 || uids[0] != 0 {
		t.Errorf("root = %v, %v", uids, err)
	}
	if gid, err := c.Listen.SocketGID(); gid != 0 || err != nil {
		t.Errorf("socket group root = %d, %v", gid, err)
	}
	_, _, err = Parse([]byte(strings.Replace(minimal, "[root]", "[no-such-user-tokend-x]", 1)), "x.yaml")
	wantProblems(t, err, `x.yaml:13: grants.g.readers.users[0]: unknown user "no-such-user-tokend-x"`)
}

func TestConfigValidateInCode(t *testing.T) {
	c := &Config{
		Listen:    Listen{SocketGroup: "root"},
		Operators: Readers{Users: []string{"root"}},
		Providers: map[string]Provider{"p": {TokenEndpoint: "http://127.0.0.1:9/token"}},
		Clients:   map[string]Client{"c": {Provider: "p", ClientID: "id", Secret: oauth.NewSecret("s")}},
		Grants: map[string]Grant{
			"cc": {Client: "c", Type: GrantClientCredentials, Readers: Readers{Groups: []string{"root"}}},
			"pw": {Client: "c", Type: GrantPassword, Username: "u", Password: oauth.NewSecret("p")},
		},
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Clients["c"].AuthMethod != "client_secret_basic" {
		t.Errorf("auth method = %q", c.Clients["c"].AuthMethod)
	}
	if c.Listen.SocketMode != Mode(0o660) || c.Refresh.Schedule.String() != DefaultSchedule {
		t.Errorf("defaults: mode %v, schedule %v", c.Listen.SocketMode, c.Refresh.Schedule)
	}
	// Validate resolved the names.
	if gid, err := c.Listen.SocketGID(); gid != 0 || err != nil {
		t.Errorf("SocketGID() = %d, %v", gid, err)
	}
	if uids, _, err := c.Operators.IDs(); err != nil || len(uids) != 1 || uids[0] != 0 {
		t.Errorf("operators = %v, %v", uids, err)
	}
	if _, gids, err := c.Grants["cc"].Readers.IDs(); err != nil || len(gids) != 1 || gids[0] != 0 {
		t.Errorf("readers = %v, %v", gids, err)
	}

	c.Grants["dc"] = Grant{Client: "c", Type: GrantDeviceCode}
	c.Refresh.Concurrency = 0
	err := c.Validate()
	want := []string{
		"config: refresh.concurrency: 0 must be at least 1",
		"config: grants.dc.type: device_code needs a device_authorization_endpoint or an issuer on provider \"p\"",
	}
	if got := errLines(err); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Validate:\n%s", strings.Join(got, "\n"))
	}
}
