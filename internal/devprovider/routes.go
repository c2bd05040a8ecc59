package devprovider

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+mtlsPrefix+"/token", s.handleToken)
	mux.HandleFunc("POST "+mtlsPrefix+"/revoke", s.handleRevoke)
	mux.HandleFunc("POST "+mtlsPrefix+"/device", s.handleDevice)
	mux.HandleFunc("/resource/", s.handleResource)
	mux.HandleFunc("GET /.well-known/oauth-authorization-server", s.handleDiscovery)
	mux.HandleFunc("GET /.well-known/openid-configuration", s.handleDiscovery)
	mux.HandleFunc("GET /authorize", s.handleAuthorize)
	mux.HandleFunc("POST /authorize/approve", s.handleApprove)
	mux.HandleFunc("POST /token", s.handleToken)
	mux.HandleFunc("POST /revoke", s.handleRevoke)
	mux.HandleFunc("POST /device", s.handleDevice)
	mux.HandleFunc("GET /device/verify", s.handleVerifyPage)
	mux.HandleFunc("POST /device/verify", s.handleVerify)
	mux.HandleFunc("POST /register", s.handleRegister)
	mux.HandleFunc("GET /register/{id}", s.handleRegistration)
	mux.HandleFunc("DELETE /register/{id}", s.handleRegistration)
	return s.wrap(mux)
}

// wrap serves h while the server is open and logs each request.
func (s *Server) wrap(mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.lmu.Lock()
		if s.closed {
			s.lmu.Unlock()
			http.Error(w, "devprovider: server closed", http.StatusServiceUnavailable)
			return
		}
		s.inflight.Add(1)
		s.lmu.Unlock()
		defer s.inflight.Done()
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		defer func() {
			if s.opts.Logf != nil {
				s.opts.Logf("devprovider: %s %s -> %d%s (%s)", r.Method, r.URL.Path, rec.status, rec.note.String(), time.Since(start).Round(time.Microsecond))
			}
		}()
		mux.ServeHTTP(rec, r)
	})
}

// recorder captures the status and a log note; it unwraps for
// http.ResponseController (FaultDown hijacks through it).
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
	note   strings.Builder
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// note adds key=value to the request's log line. Values must not be
// secrets.
func note(w http.ResponseWriter, key, value string) {
	if r, ok := w.(*recorder); ok && value != "" {
		fmt.Fprintf(&r.note, " %s=%s", key, value)
	}
}
