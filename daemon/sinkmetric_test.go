package daemon

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/metrics"
)

// tokend_sink_writes_total{result="removed"} counts files removed: a grant
// that never had a token has no file, and its sink's start counts nothing;
// a revocation that removes a written file counts one.
func TestSinkRemovalCountedOnlyWhenAFileWasRemoved(t *testing.T) {
	dir := sinkDir(t)
	never, cc := filepath.Join(dir, "user.token"), filepath.Join(dir, "cc.token")
	m := metrics.New(metrics.BuildInfo{})
	h := newHarness(t, harnessOpts{noRun: true, config: func(c *config.Config) {
		userGrant(c)
		c.Grants["cc"] = config.Grant{Client: "app", Type: config.GrantClientCredentials, Scopes: []string{"read"}}
		withSinks("user", config.Sink{Path: never})(c)
		withSinks("cc", config.Sink{Path: cc})(c)
	}})
	h.startWith(Options{Metrics: m})
	waitFor(t, "the never-authorized grant's sink brought up to date", func() bool {
		ss := h.status("user").Sinks
		return len(ss) == 1 && ss[0].OK
	})
	if _, err := os.Lstat(never); !os.IsNotExist(err) {
		t.Fatalf("a sink of a grant without a token: %v", err)
	}
	if n := sinkWrites(t, m, "user", "removed"); n != 0 {
		t.Fatalf("tokend_sink_writes_total{grant=user,result=removed} = %v at first start, where no file existed", n)
	}

	waitFile(t, cc, h.token("cc").AccessToken)
	if code, body := h.do(http.MethodPost, "/v1/tokens/cc/revoke"); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	waitFor(t, "revoked sink removed", func() bool { _, err := os.Lstat(cc); return os.IsNotExist(err) })
	waitFor(t, "the removal counted", func() bool { return sinkWrites(t, m, "cc", "removed") == 1 })
}
