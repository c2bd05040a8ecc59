package main

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"github.com/tokend/tokend/config"
)

// passedSocketWarning checks the group of the socket systemd passed
// against the configuration. Secret files are refused when the configured
// socket group (listen.socket_group, default tokend-clients) may read them;
// a socket unit whose SocketGroup= is another group, or one whose socket
// ended up with tokend's own group (which reads /etc/tokend), defeats that
// check, so it is reported. It returns "" when the socket's group is the
// configured one, or when its group may not connect.
func passedSocketWarning(l net.Listener, cfg *config.Config, selfGID int) string {
	addr, ok := l.Addr().(*net.UnixAddr)
	if !ok || addr.Name == "" || addr.Name[0] != '/' {
		return ""
	}
	fi, err := os.Stat(addr.Name)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode().Perm()&0o060 == 0 {
		return ""
	}
	gid := int(st.Gid)
	want, err := cfg.Listen.SocketGID()
	if err != nil {
		want = -1
	}
	switch {
	case gid == selfGID && gid != want:
		return fmt.Sprintf("the socket %s passed by systemd belongs to tokend's own group (gid %d), which may read %s and its secrets: give it the readers' group (SocketGroup=%s in tokend.socket)", addr.Name, gid, "/etc/tokend", config.DefaultSocketGroup)
	case gid != want:
		configured := "not set"
		if want >= 0 {
			configured = fmt.Sprintf("%q (gid %d)", cfg.Listen.SocketGroup, want)
		}
		return fmt.Sprintf("the socket %s passed by systemd lets gid %d connect, but listen.socket_group is %s: secret files are checked against listen.socket_group; make the two agree", addr.Name, gid, configured)
	}
	return ""
}
