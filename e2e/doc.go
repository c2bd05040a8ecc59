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
// The harness (oidcop.Start, StartTokend, the cookie-jar browser) is checked by
// its own tests against oidc-provider with golang.org/x/oauth2 alone, so a
// failure of a tokend test points at tokend, not at the harness.
//
// The browser tests (TestBrowser*) drive Debian's headless Chromium with
// chromedp through oidc-provider's interactive login and consent pages
// (oidcop.Config.Interactive), to tokend's callback page, which they read
// through the DOM and check on a screenshot; `tokend authorize --open` goes
// through xdg-utils' xdg-open to that Chromium. scripts/test-deps installs
// chromium and xdg-utils; without them these tests fail saying so.
// Screenshots go to $E2E_ARTIFACTS/TEST/ when that is set, else to a
// temporary directory removed with the test.
//
// # Caveats
//
// These tests wait on real time: tokens live 15 s and the rotation soak runs
// for $E2E_SOAK (default 3m). They run in parallel; the whole suite takes
// about as long as the soak plus start-up.
package e2e
