package systemd

import (
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// Notify sends a state string to $NOTIFY_SOCKET; it is a no-op (false, nil)
// when not run by systemd. state is one or more newline-separated
// assignments, as in sd_notify(3).
func Notify(state string) (bool, error) {
	sent, err := daemon.SdNotify(false, state)
	if err != nil {
		return false, fmt.Errorf("systemd: notify: %w", err)
	}
	return sent, nil
}

// notify sends state and drops the "sent" result: outside systemd there is
// nobody to tell, which is not an error.
func notify(state string) error {
	_, err := Notify(state)
	return err
}

// Ready tells systemd that start-up (or a reload) has finished: with
// Type=notify the unit becomes active only now, so call it once the store is
// open and the listeners serve.
func Ready() error { return notify(daemon.SdNotifyReady) }

// Stopping tells systemd that a graceful shutdown has begun.
func Stopping() error { return notify(daemon.SdNotifyStopping) }

// Reloading tells systemd that the configuration is being reloaded; call
// [Ready] when done. It carries MONOTONIC_USEC, which systemd 253 and later
// require for Type=notify-reload and older ones ignore.
func Reloading() error {
	return notify(daemon.SdNotifyReloading + "\n" + strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// Status sends a one-line free-form status shown by `systemctl status`.
// Newlines in msg would start new assignments, so they become spaces.
func Status(msg string) error {
	msg = strings.NewReplacer("\r", " ", "\n", " ").Replace(msg)
	return notify("STATUS=" + msg)
}

// Watchdog pings the service manager's watchdog. Call it every
// [WatchdogInterval], from the loop whose health it vouches for.
func Watchdog() error { return notify(daemon.SdNotifyWatchdog) }

// WatchdogInterval returns how often to ping ($WATCHDOG_USEC/2, checking
// $WATCHDOG_PID), or ok=false when no watchdog is set. A malformed value
// counts as no watchdog: systemd never sends one, and failing start-up over
// it would be worse than not pinging.
func WatchdogInterval() (d time.Duration, ok bool) {
	timeout, err := daemon.SdWatchdogEnabled(false)
	if err != nil || timeout <= 0 {
		return 0, false
	}
	// Half the timeout, as sd_watchdog_enabled(3) recommends, so that one
	// late ping does not kill the service.
	return timeout / 2, true
}
