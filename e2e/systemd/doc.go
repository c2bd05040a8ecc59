// Package systemd tests tokend's Debian package under a real systemd: the
// test boots systemd 252 as PID 1 in a container, installs the .deb that
// `make deb` builds with dpkg, and runs tokend as an operator would, with
// systemctl, against the in-process test provider (internal/devprovider, built
// from ./provider) running inside the same container.
//
// The package has no non-test code; `go test ./e2e/systemd` (part of `make
// test`) runs it. It needs root, systemd-nspawn (Debian's
// systemd-container, which scripts/test-deps installs) and overlayfs; when
// one is missing it fails with that hint rather than skip.
//
// # How the container is made
//
// The machines this runs on have no systemd as PID 1 and no D-Bus, and
// the host must never be written. So:
//
//   - The container's root is an overlay whose lower layer is the host's /
//     and whose upper layer is on a tmpfs of the test's own: every write in
//     the container (dpkg, /etc, the store) goes to memory and vanishes
//     with the test. The overlay's lower layer is / alone, without the
//     mounts under it, so the tmpfs does not show inside itself.
//   - systemd-nspawn -b --register=no --keep-unit --private-network boots
//     it: no machined or D-Bus is needed on the host, and the container has
//     only its own loopback (the provider and tokend talk over it; nothing
//     leaves the machine). nspawn keeps a lock file and an empty
//     propagation directory under the host's /run/systemd/nspawn; the test
//     removes the propagation directory.
//   - It boots into basic.target with timers.target masked: the host's
//     enabled services (a database, Prometheus) and timers (apt-daily) stay
//     down, which keeps the boot to a few seconds on 2 cores.
//   - Commands run inside through nsenter -t <container PID 1> -a, and as
//     other users through systemd-run --wait --pipe -p User=…, whose exit
//     status is the command's.
//   - The container is brought down even when a check fails (t.Cleanup):
//     SIGKILL to its PID 1 ends every process in its PID namespace, then
//     the nspawn process is killed and reaped, and the overlay and the
//     tmpfs are unmounted (machinectl needs machined, which is absent).
//
// # What it checks
//
// dpkg -i creates the user and the directories and enables and starts
// nothing; a missing store key (LoadCredential=) fails the start clearly;
// socket activation from the socket alone and again after systemctl stop
// tokend.service; READY (the unit becomes active) and STATUS=; fetches as a
// reader and a non-reader through /run/tokend/tokend.sock, both members of
// tokend-clients, and the reader unable to list /etc/tokend or read the key,
// the client secret or the config; a file sink in a setgid directory of the
// reader's group; a refresh;
// metrics; systemctl reload with a new grant (fetchable the moment reload
// returns) and with a broken file (non-zero, still serving); SIGSTOP of the
// main process → the watchdog's SIGQUIT, a short dump and a restart with
// the stored tokens; an upgrade (dpkg -i again) that keeps a /etc/tokend
// tightened to 0710; live systemd-analyze security; stop; dpkg -r keeping
// /etc/tokend and the store, and purge. All of it runs with
// SystemCallErrorNumber= unset in a drop-in, so a call outside
// SystemCallFilter= kills tokend with SIGSYS instead of failing with EPERM:
// the filter is exercised, not just configured.
//
// # Caveats
//
// It waits on real time: the watchdog restart alone takes WatchdogSec=
// (30 s) and RestartSec= (2 s), and the provider's 20 s tokens are waited
// for to see a refresh; the test takes about a minute and a half. The
// figures it measures (restart time, dump size, exposure) are logged, not
// asserted, except the exposure limit.
package systemd
