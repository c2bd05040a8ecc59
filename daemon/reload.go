package daemon

import (
	"errors"

	"github.com/tokend/tokend/api"
)

// ErrNoConfigSource is what the error of [Daemon.ReloadConfig] matches
// (errors.Is) when the daemon was built without [Options.LoadConfig]
// (tokend dev): there is no file to read again.
var ErrNoConfigSource = errors.New("daemon: no configuration file to reload")

// ReloadConfig reads the configuration again through [Options.LoadConfig]
// and applies it ([Daemon.Reload]). Its warnings are logged; an error
// (the file's or the new configuration's) is logged and returned, with the
// same message, and the running configuration stays. When it returns nil
// the new configuration is in effect: a fetch of a grant it added finds the grant. SIGHUP and
// POST /v1/reload both come here, one reload at a time.
func (d *Daemon) ReloadConfig() (*api.ReloadResponse, error) {
	if d.opts.LoadConfig == nil {
		return nil, &engineError{kind: kindNotSupported, code: api.CodeNotSupported,
			desc: "this daemon runs without a configuration file (tokend dev); there is nothing to reload", err: ErrNoConfigSource}
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
		return nil, wrapError(kindInvalidConfiguration, api.CodeInvalidConfiguration, err)
	}
	return &api.ReloadResponse{Grants: len(cfg.Grants), Warnings: warnings}, nil
}
