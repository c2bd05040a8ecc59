// Package e2e holds tokend's end-to-end tests: they build the tokend binary
// and drive it, as an operator and as a local program would, against an
// independent authorization server, oidc-provider (Node.js, pinned in
// oidc/package-lock.json, started from oidc/server.mjs).
//
// The package has no non-test code. Its tests need node and the npm packages
// in oidc/node_modules, which `make test` (scripts/test-deps) installs; when
// they are missing the tests fail with that hint rather than skip, so a
// machine that cannot run them is noticed.
//
// The harness (StartOIDC, StartTokend, the cookie-jar browser) is checked by
// its own tests against oidc-provider with golang.org/x/oauth2 alone, so a
// failure of a tokend test points at tokend, not at the harness.
//
// # Caveats
//
// These tests wait on real time: tokens live 15 s and the rotation soak runs
// for $E2E_SOAK (default 3m). They run in parallel; the whole suite takes
// about as long as the soak plus start-up.
package e2e
