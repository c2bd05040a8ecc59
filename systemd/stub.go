// Package systemd ... (STUBS: replaced by the implementation.)
package systemd

import (
	"net"
	"time"
)

// Notify sends a state string to $NOTIFY_SOCKET; it is a no-op (false, nil)
// when not run by systemd.
func Notify(state string) (bool, error) { panic("unimplemented") }

// Ready, Stopping, Reloading, Status and Watchdog send the matching
// notifications.
func Ready() error            { panic("unimplemented") }
func Stopping() error         { panic("unimplemented") }
func Reloading() error        { panic("unimplemented") }
func Status(msg string) error { panic("unimplemented") }
func Watchdog() error         { panic("unimplemented") }

// WatchdogInterval returns how often to ping ($WATCHDOG_USEC/2, checking
// $WATCHDOG_PID), or ok=false when no watchdog is set.
func WatchdogInterval() (d time.Duration, ok bool) { panic("unimplemented") }

// Listeners returns the sockets passed by systemd ($LISTEN_FDS, $LISTEN_PID),
// keyed by $LISTEN_FDNAMES (or "" when unnamed); empty when none.
func Listeners() (map[string][]net.Listener, error) { panic("unimplemented") }

// Credential returns the path of a systemd credential
// ($CREDENTIALS_DIRECTORY/name) if it exists.
func Credential(name string) (path string, ok bool) { panic("unimplemented") }

// UnderJournal reports whether stderr is connected to the journal
// ($JOURNAL_STREAM matches stderr's device and inode), so logs can omit
// timestamps.
func UnderJournal() bool { panic("unimplemented") }
