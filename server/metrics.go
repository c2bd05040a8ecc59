package server

import (
	"log/slog"
	"net/http"
	"time"
)

// metricsServer serves /metrics, /healthz and /readyz on the metrics
// listener, to requests that name it in their Host header: /metrics lists
// the grants, and a web page must not read it through DNS rebinding (see
// hostGuard).
// handler, when set, is built from ready (MetricsHandler); nil serves
// only /healthz and /readyz.
func newMetricsServer(handler func(ready func() error) http.Handler, ready func() error, bound func() string, log *slog.Logger) *http.Server {
	var h http.Handler
	if handler != nil {
		h = handler(ready)
	} else {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			if err := ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
		h = mux
	}
	// A scraper or a health check sends its request at once; a keep-alive
	// connection between scrapes is not worth a place of the few this
	// listener has (it is bounded; connLimiter closes idle ones first).
	return &http.Server{
		Handler:           hostGuard(bound, nil, misdirected, h),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       5 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          errorLog(log, "metrics"),
	}
}
