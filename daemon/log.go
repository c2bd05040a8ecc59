package daemon

import (
	"io"
	"log/slog"
	"strings"

	"github.com/tokend/tokend/config"
)

// secretKeys are attribute keys whose values never reach a log line, even
// when a caller passes a plain string by mistake. Types that hold secrets
// redact themselves; this is the second line of defence.
var secretKeys = []string{"access_token", "refresh_token", "id_token", "client_secret", "password", "secret", "code_verifier", "verifier", "device_code", "registration_access_token", "authorization", "key"}

// NewLogger returns the daemon's structured logger. Under journald the
// time is left out (the journal stamps every line) and the level still
// leads.
func NewLogger(w io.Writer, c config.Log, journal bool) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if journal && len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		k := strings.ToLower(a.Key)
		for _, s := range secretKeys {
			if k == s || strings.HasSuffix(k, "_"+s) {
				return slog.String(a.Key, "[REDACTED]")
			}
		}
		return a
	}}
	if strings.ToLower(c.Format) == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
