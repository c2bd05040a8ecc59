package main

import (
	"strings"
	"testing"
)

func TestStatusShowsRefresher(t *testing.T) {
	f := newFakeDaemon(t, map[string][]reply{
		"GET /v1/tokens/a/status": {{200, `{"name":"a","type":"client_credentials","state":"valid","refresher":"host-a","refresher_self":true}`}},
		"GET /v1/tokens/b/status": {{200, `{"name":"b","type":"client_credentials","state":"valid","refresher":"host-b"}`}},
		"GET /v1/tokens/c/status": {{200, `{"name":"c","type":"client_credentials","state":"valid","fleet_conflict":"scopes differ"}`}},
		"GET /v1/tokens/d/status": {{200, `{"name":"d","type":"client_credentials","state":"valid"}`}},
	})
	for grant, want := range map[string][]string{
		"a": {"refreshed by: host-a (this instance)\n"},
		"b": {"refreshed by: host-b\n"},
		"c": {"refreshed by: -\n", "fleet conflict: scopes differ (not refreshed by this instance)\n"},
		"d": nil,
	} {
		tc := newTestCLI()
		if code := tc.run("status", grant, "--socket", f.socket); code != 0 {
			t.Fatalf("%s: exit %d: %s", grant, code, tc.errOut.String())
		}
		var out string
		for _, l := range strings.Split(tc.out.String(), "\n") {
			out += strings.Join(strings.Fields(l), " ") + "\n"
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: no %q in:\n%s", grant, w, out)
			}
		}
		if want == nil && (strings.Contains(out, "refreshed by") || strings.Contains(out, "fleet")) {
			t.Errorf("%s: fleet lines outside fleet mode:\n%s", grant, out)
		}
	}
}
