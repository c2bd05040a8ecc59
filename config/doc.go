// Package config owns tokend's configuration file: it turns the YAML file
// into a plain [Config] that the rest of tokend takes as it is. It decodes
// strictly, fills defaults, validates, looks up the users and groups the
// file names, reads the secrets it points to (client secrets and passwords
// in files or systemd credentials, the store key, the private keys of
// private_key_jwt clients and jwt_bearer assertions, client certificates
// and their keys) and the providers' CA bundles, and explains the result
// for `tokend check-config` ([Config.Explain]). Keys and certificates are
// parsed once, here ([Client.Key], [Client.TLSCert], [Assertion.Key],
// [Provider.CAs]); an expired certificate or a key that does not fit its
// algorithm is a load error, not a failure at the first request.
//
// Every value is parsed once, here, and comes out typed: durations as
// time.Duration, listen.socket_mode as a [FileMode], refresh.schedule and
// grants.*.schedule as a [Schedule] (a parsed cron.Schedule that keeps its
// spec), users and groups as the ids they resolved to ([Readers.IDs],
// [Listen.SocketGID]). Nothing downstream parses or looks up again.
//
// # Messages
//
// Every problem names the file, the line and the key path
// ("config.yaml:14: grants.reports.readers.users[0]: unknown user
// "reports""), and all of them are reported at once, in the order of their
// lines. An unknown key gets a suggestion when one is close ("did you mean
// "token_endpoint"?"). The loader does not rely on the YAML library's
// messages: the library parses the text into a node tree, and the loader
// checks that tree against the Config type by reflection (every key, the
// kind of every value, and each scalar as the decoder will take it) before
// anything is decoded. Only syntax errors are the parser's own words, after
// the file name. Secrets never appear in messages, and values in type
// errors are cut short.
//
// # Seams
//
// A [Config] can be built in code (tests, tokend dev, the benchmarks): call
// [Config.ApplyDefaults], then [Config.Validate] if it names users or groups
// by name, which looks them up. Users and groups are looked up through a
// [Loader]; its lookup functions let tests give the loader a user database
// of their own, so that no test depends on the accounts of the machine it
// runs on.
//
// The package imports package oauth for the types and rules it shares with
// it (oauth.Endpoints, oauth.Secret, and oauth.CheckEndpointURL: every
// endpoint, configured or discovered, obeys the same https-or-loopback
// rule), and nothing else of tokend.
package config
