// Package crash holds tokend's crash-consistency tests: they build the tokend
// binary, run it against the in-process provider (devprovider) with refresh
// token rotation on, kill it with SIGKILL at random moments many times over,
// and then check the store file and every grant's refresh chain.
//
// The package has no non-test code.
//
// # Caveats
//
// The torture test runs on real time (the binary has no fake clock): about a
// minute with the defaults. $TOKEND_CRASH_GRANTS (default 300) and
// $TOKEND_CRASH_KILLS (default 50) change its size, $TOKEND_CRASH_SEED makes
// the kill times reproducible.
//
// A SIGKILL between a refresh request reaching the provider and tokend
// committing the answer loses that grant's refresh chain when the provider
// rotates refresh tokens: the new refresh token existed only in the killed
// process (or in no process at all), and the old one is rejected as reused. No client can close that window
// without the provider's help (a reuse grace period); the test measures it.
package crash
