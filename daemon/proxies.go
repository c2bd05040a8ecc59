package daemon

// The grants' local proxies (key proxy: {listen}) are served by package
// server, their requests judged here with the rights of the caller the
// proxy identified, exactly as a request on the socket would be. A proxy
// listens where it started until a restart.

import (
	"github.com/tokend/tokend/config"
)

// proxyListens maps each grant with a proxy to its address.
func proxyListens(c *config.Config) map[string]string {
	m := map[string]string{}
	for name, g := range c.Grants {
		if g.Proxy != nil {
			m[name] = g.Proxy.Listen
		}
	}
	return m
}

// keepProxies gives next's grants the proxies running has: they listen
// where they started until a restart.
func keepProxies(next, running *config.Config) {
	for name, g := range next.Grants {
		var p *config.GrantProxy
		if r, ok := running.Grants[name]; ok {
			p = r.Proxy
		}
		if g.Proxy != p {
			g.Proxy = p
			next.Grants[name] = g
		}
	}
}
