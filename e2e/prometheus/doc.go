// Package prometheus tests tokend's shipped alerting rules
// (deploy/prometheus/tokend.rules.yml) against a real Prometheus (the
// Debian prometheus binary that scripts/test-deps installs) scraping real
// tokend processes every second, each talking to its own in-process OAuth
// provider (internal/devprovider):
//
//   - outage: the provider is shut down after the first 90-second token;
//     TokendTokenExpiringSoon must fire before that token expires (the lead
//     time is logged);
//   - healthy: 20-second tokens refreshed several times raise no alert;
//   - reauth: the provider answers invalid_grant; TokendReauthorizationRequired
//     must fire.
//
// The three tokend processes share one Prometheus and run at the same time,
// so the test takes about two minutes. Prometheus listens on loopback only
// and keeps its data in a temporary directory.
package prometheus
