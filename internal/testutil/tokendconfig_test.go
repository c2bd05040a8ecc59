package testutil

import "testing"

// TestTokendConfigString: the sections come in order, lines indented
// under them, listeners that are off quoted, empty sections left out.
func TestTokendConfigString(t *testing.T) {
	got := TokendConfig{
		Comment:   "a test",
		Store:     []string{"path: /s/tokend.db"},
		Socket:    "/s/tokend.sock",
		Listen:    []string{`socket_mode: "0666"`},
		Callback:  "127.0.0.1:8785",
		Metrics:   "off",
		Refresh:   []string{`schedule: "@every 1s"`},
		Operators: []string{"groups: []"},
		LogLevel:  "debug",
		Provider:  "op", Issuer: "http://127.0.0.1:1",
		Clients: "  app:\n    provider: op\n\n",
		Grants:  "  g:\n    client: app\n",
	}.String()
	want := `# a test
store:
  path: /s/tokend.db
listen:
  socket: /s/tokend.sock
  socket_mode: "0666"
  callback: 127.0.0.1:8785
  metrics: "off"
refresh:
  schedule: "@every 1s"
operators:
  groups: []
log:
  level: debug
providers:
  op:
    issuer: http://127.0.0.1:1
clients:
  app:
    provider: op
grants:
  g:
    client: app
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if got, want := (TokendConfig{Socket: "/s", Grants: "  g: {}"}).String(), "listen:\n  socket: /s\ngrants:\n  g: {}\n"; got != want {
		t.Errorf("a bare configuration:\n%s\nwant:\n%s", got, want)
	}
}
