package daemon

import (
	"errors"
	"reflect"

	"github.com/tokend/tokend/api"
	"github.com/tokend/tokend/config"
)

// ErrNoConfigSource is what the error of [Daemon.ReloadConfig] matches
// (errors.Is) when the daemon was built without [Options.LoadConfig]
// (tokend dev): there is no file to read again.
var ErrNoConfigSource = errors.New("daemon: no configuration file to reload")

// ReloadConfig reads the configuration again through [Options.LoadConfig]
// and applies it ([Daemon.Reload]). Its warnings are logged; an error
// (the file's or the new configuration's) is logged and returned, with the
// same message, and the running configuration stays. When it returns nil
// the new configuration is in effect: a fetch of a grant it added finds
// the grant. Keys that only a restart applies (see [RestartKeys]) keep
// their running values; the answer lists those the file changed, and a
// warning is logged. SIGHUP and POST /v1/reload both come here, one reload
// at a time.
func (d *Daemon) ReloadConfig() (*api.ReloadResponse, error) {
	if d.opts.LoadConfig == nil {
		return nil, &engineError{Kind: kindNotSupported, Code: api.CodeNotSupported,
			Description: "this daemon runs without a configuration file (tokend dev); there is nothing to reload", Err: ErrNoConfigSource}
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, warnings, err := d.opts.LoadConfig()
	for _, w := range warnings {
		d.log.Warn("configuration", "warning", w)
	}
	var restart []string
	if err == nil {
		running, _ := d.config()
		restart = keepUnreloadable(cfg, running)
		err = d.Reload(cfg)
	}
	if err != nil {
		d.log.Error("reload failed; keeping the running configuration", "err", err)
		return nil, wrapError(kindInvalidConfiguration, api.CodeInvalidConfiguration, err)
	}
	if len(restart) > 0 {
		d.log.Warn("configuration reloaded, but these changes need a restart and are not in effect", "keys", restart)
	}
	return &api.ReloadResponse{Grants: len(cfg.Grants), Warnings: warnings, RestartNeeded: restart}, nil
}

// unreloadable are the keys a reload cannot apply, each with the value it
// compares: the store is open, the listeners are bound, the logger, the
// refresh workers and the providers' HTTP client are built once, at start.
var unreloadable = []struct {
	key string
	get func(*config.Config) any
}{
	{"store.path", func(c *config.Config) any { return c.Store.Path }},
	// The file and the key's bytes: the same file may hold a new key.
	{"store.key_file", func(c *config.Config) any { return [2]any{c.Store.KeyFile, c.Store.Key} }},
	{"store.backend", func(c *config.Config) any { return c.Store.Backend }},
	{"store.etcd", func(c *config.Config) any { return c.Store.Etcd }},
	{"listen.socket", func(c *config.Config) any { return c.Listen.Socket }},
	{"listen.socket_mode", func(c *config.Config) any { return c.Listen.SocketMode }},
	{"listen.socket_group", func(c *config.Config) any { return c.Listen.SocketGroup }},
	{"listen.callback", func(c *config.Config) any { return c.Listen.Callback }},
	{"listen.metrics", func(c *config.Config) any { return c.Listen.Metrics }},
	{"log.level", func(c *config.Config) any { return c.Log.Level }},
	{"log.format", func(c *config.Config) any { return c.Log.Format }},
	{"refresh.concurrency", func(c *config.Config) any { return c.Refresh.Concurrency }},
	{"refresh.timeout", func(c *config.Config) any { return c.Refresh.Timeout }},
	{"fleet.instance", func(c *config.Config) any { return c.Fleet.Instance }},
	{"grants.*.proxy", func(c *config.Config) any { return proxyListens(c) }},
}

// RestartKeys lists the configuration keys that a reload does not apply:
// store.*, listen.*, log.*, refresh.concurrency, refresh.timeout,
// fleet.instance and the grants' proxies. Every other key (refresh's schedule and policy,
// operators, providers, clients, grants, hooks) is applied by a reload.
func RestartKeys() []string {
	keys := make([]string, len(unreloadable))
	for i, u := range unreloadable {
		keys[i] = u.key
	}
	return keys
}

// keepUnreloadable returns the keys a reload cannot apply whose value in
// next differs from the running one (those need a restart), and gives next
// the running values of all of them, so that the configuration the daemon
// keeps says what is in effect and the next reload reports them again.
func keepUnreloadable(next, running *config.Config) []string {
	var changed []string
	for _, u := range unreloadable {
		if !reflect.DeepEqual(u.get(next), u.get(running)) {
			changed = append(changed, u.key)
		}
	}
	next.Store = running.Store
	next.Listen = running.Listen // with the socket group it resolved
	next.Log = running.Log
	next.Fleet = running.Fleet
	next.Refresh.Concurrency = running.Refresh.Concurrency
	next.Refresh.Timeout = running.Refresh.Timeout
	keepProxies(next, running)
	return changed
}
