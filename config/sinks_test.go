package config

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSinksParsed(t *testing.T) {
	c := mustParse(t, minimal+`    sinks:
      - path: /run/tokend/sinks/g.token
      - path: /run/tokend/sinks/g.env
        format: env
        mode: "0640"
        owner: nobody
        group: staff
        command: [systemctl, reload, nginx]
        command_timeout: 5s
`)
	s := c.Grants["g"].Sinks
	if len(s) != 2 {
		t.Fatalf("sinks: %+v", s)
	}
	if s[0].Format != SinkRaw || s[0].Mode.Perm() != 0o600 || s[0].CommandTimeout != DefaultSinkCommandTimeout {
		t.Errorf("defaults: %+v", s[0])
	}
	if uid, gid, err := s[0].IDs(); uid != -1 || gid != -1 || err != nil {
		t.Errorf("default owner: %d %d %v", uid, gid, err)
	}
	if uid, gid, err := s[1].IDs(); uid != 65534 || gid != 50 || err != nil {
		t.Errorf("owner: %d %d %v", uid, gid, err)
	}
	if s[1].Mode.Perm() != 0o640 || s[1].CommandTimeout != 5*time.Second || strings.Join(s[1].Command, " ") != "systemctl reload nginx" {
		t.Errorf("sink: %+v", s[1])
	}
	var b bytes.Buffer
	c.explain(&b, time.Now())
	for _, want := range []string{
		"sink:     /run/tokend/sinks/g.token: the token alone, mode 0600, owner tokend's user, group tokend's group",
		"sink:     /run/tokend/sinks/g.env: TOKEND_ACCESS_TOKEN=",
		`then runs ["systemctl" "reload" "nginx"] (timeout 5s`,
		"removed on revoke",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("explain lacks %q:\n%s", want, b.String())
		}
	}
}

func TestSinksProblems(t *testing.T) {
	_, _, err := parse(minimal + `    sinks:
      - path: relative/g.token
      - path: /run/tokend/../g.token
      - path: /g.token
      - path: /run/x/a
        format: yaml
        mode: "4600"
        owner: nosuchuser
        group: nosuchgroup
        command: [""]
        command_timeout: -1s
      - path: /run/x/dup
      - path: /run/x/dup
      - {}
`)
	wantProblems(t, err,
		`sinks[0].path: "relative/g.token" must be an absolute path`,
		`sinks[1].path: "/run/tokend/../g.token" is not a clean path`,
		`sinks[2].path: "/g.token": a sink does not go in /`,
		`sinks[3].format: unknown format "yaml"`,
		`sinks[3].mode: "4600" is not an octal permission of at most 0777`,
		`sinks[3].owner: unknown user "nosuchuser"`,
		`sinks[3].group: unknown group "nosuchgroup"`,
		`sinks[3].command: the program`,
		`sinks[3].command_timeout: -1s must not be negative`,
		`sinks[5].path: "/run/x/dup" is already the sink of grants.g.sinks[4].path`,
		`sinks[6].path: must be set`,
	)
	_, warns, err := parse(minimal + "    sinks: [{path: /run/x/t, mode: \"0644\"}]\n")
	if err != nil || len(warns) != 1 || !strings.Contains(warns[0], "lets every user read the token") {
		t.Errorf("world-readable sink: %q %v", warns, err)
	}
}
