package daemon

import (
	"errors"
	"net/http"
)

// ReloadResponse answers POST /v1/reload: the configuration now in
// effect. Warnings are the new file's (a secret readable by others, ...);
// the daemon logs them too.
type ReloadResponse struct {
	Grants   int      `json:"grants"`
	Warnings []string `json:"warnings,omitempty"`
}

// ErrNoConfigSource is returned by [Daemon.ReloadConfig] when the daemon
// was built without [Options.LoadConfig] (tokend dev): there is no file to
// read again.
var ErrNoConfigSource = errors.New("daemon: no configuration file to reload")

// ReloadConfig reads the configuration again through [Options.LoadConfig]
// and applies it ([Daemon.Reload]). Its warnings are logged; an error
// (the file's or the new configuration's) is logged and returned, and the
// running configuration stays. When it returns nil the new configuration
// is in effect: a fetch of a grant it added finds the grant. SIGHUP and
// POST /v1/reload both come here, one reload at a time.
func (d *Daemon) ReloadConfig() (*ReloadResponse, error) {
	if d.opts.LoadConfig == nil {
		return nil, ErrNoConfigSource
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, warnings, err := d.opts.LoadConfig()
	for _, w := range warnings {
		d.log.Warn("configuration", "warning", w)
	}
	if err == nil {
		err = d.Reload(cfg)
	}
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration", "err", err)
		return nil, err
	}
	return &ReloadResponse{Grants: len(cfg.Grants), Warnings: warnings}, nil
}

// handleReload serves POST /v1/reload, for operators: it reloads the
// configuration file and answers once the new configuration is in effect,
// or with 422 and the file's error when the file is invalid (the running
// configuration stays).
func (d *Daemon) handleReload(w http.ResponseWriter, r *http.Request) {
	if !d.isOperator(peerFrom(r.Context())) {
		d.fetchMetric(nil, http.StatusForbidden)
		writeError(w, http.StatusForbidden, "forbidden", "this action needs root or an operator group")
		return
	}
	resp, err := d.ReloadConfig()
	switch {
	case errors.Is(err, ErrNoConfigSource):
		writeError(w, http.StatusNotImplemented, "not_supported", "this daemon runs without a configuration file (tokend dev); there is nothing to reload")
	case err != nil:
		writeError(w, http.StatusUnprocessableEntity, "invalid_configuration", err.Error())
	default:
		writeJSON(w, http.StatusOK, resp)
	}
}
