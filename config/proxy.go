package config

import (
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
)

// GrantProxy is a grant's proxy: key proxy, e.g. proxy: {listen:
// "127.0.0.1:8790"}.
type GrantProxy struct {
	// Listen is a loopback IP address with a port, or the absolute path
	// of a unix socket.
	Listen string `yaml:"listen"`
}

// validateProxies checks the grants' proxies: an address each may use,
// a protected resource to forward to, and no address taken twice.
func (c *Config) validateProxies(p *problems) {
	taken := map[string]string{}
	if c.Listen.Callback != "" && c.Listen.Callback != "off" {
		taken[c.Listen.Callback] = "listen.callback"
	}
	if c.Listen.Metrics != "" && c.Listen.Metrics != "off" {
		taken[c.Listen.Metrics] = "listen.metrics"
	}
	if c.Listen.Socket != "" {
		taken[c.Listen.Socket] = "listen.socket"
	}
	for _, name := range sortedKeys(c.Grants) {
		g := c.Grants[name]
		if g.Proxy == nil {
			continue
		}
		path := "grants." + name + ".proxy"
		if g.ProtectedResource == "" {
			p.errorf(path, "a proxy forwards to the grant's protected_resource, which is not set")
		}
		addr := g.Proxy.Listen
		if addr == "" {
			p.errorf(path+".listen", "must be set: a loopback address such as 127.0.0.1:8790, or an absolute unix socket path")
			continue
		}
		if !ProxyAddrOK(addr) {
			p.errorf(path+".listen", "%q is neither a loopback IP address with a port (127.0.0.1:8790, [::1]:8790) nor an absolute unix socket path: tokend can tell who connects from this host only", addr)
			continue
		}
		if other, ok := taken[addr]; ok {
			p.errorf(path+".listen", "%q is %s too", addr, other)
			continue
		}
		taken[addr] = path + ".listen"
	}
}

// ProxyAddrOK reports whether addr is an address a proxy may listen on: a
// loopback IP address with a port, or an absolute unix socket path.
func ProxyAddrOK(addr string) bool {
	if filepath.IsAbs(addr) {
		return true
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
