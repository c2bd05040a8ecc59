package systemd

import (
	"fmt"
	"net"

	"github.com/coreos/go-systemd/v22/activation"
)

// Listeners returns the sockets passed by systemd ($LISTEN_FDS, $LISTEN_PID),
// keyed by $LISTEN_FDNAMES (or "" when unnamed); empty when none. tokend.socket
// names its socket "api" (FileDescriptorName=api).
//
// Every passed descriptor must be a listening stream socket: anything else
// (a datagram socket, a FIFO) is a unit-file mistake and is reported as an
// error, after closing everything, rather than silently ignored.
func Listeners() (map[string][]net.Listener, error) {
	files := activation.Files(true)
	out := make(map[string][]net.Listener, len(files))
	var firstErr error
	for _, f := range files {
		name := f.Name()
		// activation names an unnamed descriptor "LISTEN_FD_<n>"; the
		// contract is "" for those.
		if !namedFD(name) {
			name = ""
		}
		l, err := net.FileListener(f)
		// FileListener dups the descriptor; the original is ours to close.
		f.Close()
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("systemd: passed socket %q is not a listening stream socket: %w", f.Name(), err)
			}
			continue
		}
		out[name] = append(out[name], l)
	}
	if firstErr != nil {
		for _, ls := range out {
			for _, l := range ls {
				l.Close()
			}
		}
		return nil, firstErr
	}
	return out, nil
}

func namedFD(name string) bool {
	const prefix = "LISTEN_FD_"
	if len(name) <= len(prefix) || name[:len(prefix)] != prefix {
		return true
	}
	for _, c := range name[len(prefix):] {
		if c < '0' || c > '9' {
			return true
		}
	}
	return false
}
