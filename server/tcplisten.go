package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
)

// listenerOff reports whether a TCP listener's configured address disables
// it. Only "off" does: an empty callback address is given the default by
// config.ApplyDefaults, and an empty metrics address is "off" by the caller.
func listenerOff(addr string) bool { return addr == "off" }

// listenTCP binds one of the daemon's TCP listeners. what names it (callback,
// metrics) and key is its configuration key, so a failure says which
// listener, which address and what to change. A port another process holds
// is the common case (a second daemon, or an unrelated service on 8785 or
// 9785) and gets a message of its own instead of "bind: address already in
// use".
func listenTCP(what, key, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("server: %s listener: %s is already in use by another process (%s)", what, addr, key)
		}
		return nil, fmt.Errorf("server: %s listener on %s (%s): %w", what, addr, key, err)
	}
	return ln, nil
}

// hostGuard refuses, with refuse, a request whose Host header does not name
// the listener bound at bound() (see hostAllowed) or one of extra().
//
// This is the defence against DNS rebinding: a web page at
// http://attacker.example:9785 whose name the attacker re-points at
// 127.0.0.1 is, to the browser, same-origin with itself, so its script may
// read what a loopback listener answers, and a page may drive the
// authorization flow through the callback listener. The browser still
// sends Host: attacker.example:9785, which names no address of ours.
func hostGuard(bound func() string, extra func() []string, refuse http.HandlerFunc, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ex []string
		if extra != nil {
			ex = extra()
		}
		if !hostAllowed(r.Host, bound(), ex) {
			refuse(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether host (a request's Host header) names the
// listener bound at addr (host:port as net.Listener.Addr gives it): with
// that port, localhost, a loopback IP or the bound IP; for a listener bound
// to every address (0.0.0.0, ::), any IP literal or this machine's name,
// since neither can be re-pointed by someone else's DNS. A host equal
// (ignoring case) to one of extra matches as it is: the callback's
// redirect_uri hosts, which may sit behind a reverse proxy.
func hostAllowed(host, addr string, extra []string) bool {
	if host == "" {
		return false
	}
	for _, e := range extra {
		if e != "" && strings.EqualFold(host, e) {
			return true
		}
	}
	bip, bport, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		// No port: the scheme's default. The listeners speak plain HTTP.
		name, port = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), "80"
	}
	if port != bport {
		return false
	}
	bound, _ := netip.ParseAddr(bip)
	if strings.EqualFold(name, "localhost") {
		return true
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		ip = ip.Unmap()
		return ip.IsLoopback() || ip == bound.Unmap() || bound.IsUnspecified()
	}
	if bound.IsUnspecified() {
		if h := hostname(); h != "" && strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// hostname is this machine's name, read once.
var hostname = sync.OnceValue(func() string {
	h, _ := os.Hostname()
	return h
})

// misdirected is the answer to a request for a host that is not ours.
func misdirected(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	http.Error(w, "tokend: this request's Host names no address of this listener", http.StatusMisdirectedRequest)
}
