// Package fleet holds the end-to-end tests of fleet mode (store.backend:
// etcd): three built `tokend serve` processes share their grants through a
// three-member etcd cluster (three processes of etcdmember, built by the
// test) and refresh them at oidc-provider (e2e/oidc/server.mjs), which
// rotates refresh tokens and detects their reuse.
//
// The tests kill -9 the instance refreshing a grant and measure the
// failover, stop etcd members (one: nothing visible; two: quorum lost,
// refreshes paused, tokens served until they expire, a fetch of an
// expired one answered at once), cut the member every instance lists first
// off from its peers (through etcdtest.PeerRelay on the peer URLs) while
// killing the refresher (nothing visible, no refresh token reused), pause a refresher
// longer than its lease in the middle of a refresh (the fencing case),
// send an authorization's start page and its callback to other instances
// than the one that started it (the balancer in front of the callback
// listeners may send either anywhere), and start three instances together
// on a client that registers dynamically. Every instance runs a reader loop over its socket
// that checks each token it is served is unexpired.
//
// The package has no non-test code.
//
// # Caveats
//
// The tests run on real time (the binaries have no fake clock), about three
// minutes with the defaults on two cores. $FLEET_KILLS (default 5) sets the
// number of kills of the failover test; the figure is 20
// (FLEET_KILLS=20, about three minutes more; `make bench` runs it and
// reports the median and maximum, $FLEET_FAILOVER_OUT receives every
// figure). $FLEET_ISOLATION (default 20s; 30s is the figure asked for)
// and $FLEET_ISOLATION_KILLS (default 3) set the length of the isolation
// test and its kills. $FLEET_RACE=1 builds tokend with the race detector
// (slower failovers on a loaded machine).
//
// The paused-refresher test pauses the refresher of a client_credentials
// grant: with a rotating refresh token, a pause after the provider
// consumed the old token necessarily ends in reuse detection (the fencing
// window docs/fleet.md describes), whatever the store does. Whether the paused
// instance's write is fenced or its request times out first when it
// continues is up to the Go runtime; both end with the other instance's
// token everywhere, and the test logs which happened.
package fleet
