// Package systemd is tokend's small bridge to the service manager: the
// sd_notify protocol (readiness, reload, stop, status, watchdog), socket
// activation, systemd credentials and journal detection. It wraps
// github.com/coreos/go-systemd/v22 so that the daemon depends on a handful
// of functions, each of which is a no-op outside systemd.
//
// The folder also holds the files an operator installs (see `make install`):
//
//	tokend.service    Type=notify service with watchdog and full sandboxing
//	tokend.socket     the fetch API socket, /run/tokend/tokend.sock, passed as "api"
//	tokend.sysusers   sysusers.d snippet: the tokend user, the tokend-clients and tokend-admin groups
//	tokend.tmpfiles   tmpfiles.d snippet: /etc/tokend, /var/lib/tokend and /run/tokend
//
// A test runs systemd-analyze (verify, and security with --offline) over the
// units so that the sandboxing cannot silently regress.
//
// # Caveats
//
// The environment variables systemd sets (NOTIFY_SOCKET, WATCHDOG_USEC,
// WATCHDOG_PID, LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) are read on every
// call and left in place, except that [Listeners] unsets the LISTEN_*
// variables: the passed descriptors belong to this process and a child must
// not believe it received them.
//
// [Listeners] can be called once: it takes ownership of descriptors 3 and
// up. A second call finds no LISTEN_* variables and returns nothing.
//
// The functions read process-wide state (the environment and file
// descriptors); they are safe for concurrent use, but tests that change the
// environment must not run in parallel.
package systemd
