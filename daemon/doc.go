// Package daemon is tokend's engine: its lifecycle (Run), the refresh
// scheduler and refresher, the authorization flows, and what a caller may
// read or do (per-grant access by the caller's kernel credentials). The
// servers that face the host (the unix-socket API, the callback and
// metrics listeners, the grants' proxies) are package server's: they
// read who the caller is from the connection and ask the engine through
// its exported methods (requests.go), which take that Caller and fail
// with an *engine.Error only. Run binds and stops them through the
// Frontend interface; the engine never serves HTTP itself (it speaks to
// providers as an HTTP client, through package oauth).
//
// It takes a typed, validated configuration from package config and never
// parses YAML nor looks up users or groups: modes, schedules and ids come
// resolved (config.Readers.IDs, config.Listen.SocketGID). It speaks to
// providers through package oauth (the concrete *oauth.Provider: the
// protocol has one implementation, and tests put an in-process provider
// from internal/devprovider behind it), keeps state through the Store interface
// (storage.go, which states the contract a backend meets; package store's
// bbolt file implements it, Options.OpenStore plugs in another), answers
// in the shapes of package api, and reports through the Metrics and
// Notifier interfaces.
//
// # Files
//
// Lifecycle and state: daemon.go (the Daemon: New, the configuration
// applied at start and on reload, Run, the tokens loaded from the store),
// options.go (its collaborators: Options, Metrics, Notifier and the
// Frontend it runs, and their no-op forms), grant.go (a grant's runtime:
// the token it serves, published and indexed for the scheduler),
// notify.go (what the metrics and the service manager are told),
// storage.go (the Store contract), clock.go, log.go, ratelog.go
// (warnings that repeat). Scheduling: scheduler.go and
// queue.go, policy.go (when a token comes due), refresh.go. Providers:
// providers.go (discovery, registration), resource.go (a protected
// resource's authorization server), clienthttp.go (a client's
// certificate, a provider's CAs), provmetrics.go (provider requests
// counted). Grant types: exchange.go (jwt_bearer and token_exchange; an
// exchange grant follows its subject grant), dpop.go (a dpop grant's
// key, kept with its token set, and the proofs handed to readers).
// Callers: requests.go (what the servers ask, on behalf of a Caller),
// access.go (who may read and who is an operator), fetch.go (a token to
// hand out, a refresh now, a status), errors.go. People: authorize.go
// (the authorization flows and revocation), callback.go (a start page
// taken, an authorization completed from its code and state), paste.go
// (paste-back authorization), stepup.go (rejected tokens and step-ups
// that programs report), proxies.go (the proxies' addresses across a
// reload). Outputs: sinks.go (which sinks each grant has and the token
// each is offered; package sink writes the files), hooks.go (which hook
// event fires when; package hook delivers them). reload.go. Fleet mode:
// fleet.go (its runtime, and how the files below share the work),
// fingerprint.go, fleetrefresh.go and fleetwrite.go (refreshing only
// while held; fenced writes), fleetwatch.go (the records other instances
// write), fleetserve.go (fetches and status on an instance that does not
// refresh a grant), fleetstart.go (start pages fleet-wide).
//
// # Errors
//
// The engine's failures that reach a caller are *engine.Error values
// (package internal/engine; errors.go): a kind (forbidden, not found,
// reauthorization required, unavailable, provider error, ...), an api
// error code and a description. The engine never picks an HTTP status:
// package server maps each kind to one.
//
// # Tokens in memory
//
// Every grant's current token lives in memory as an immutable record behind
// an atomic pointer. A fetch of a valid token loads that pointer and
// answers: it takes no lock, does no I/O and never waits for a refresh or
// for the store's write lock. A refresh writes the new record to the store
// first (a refresh is not done before its token is durable) and then
// replaces the pointer.
//
// # Refresh
//
// When a grant's token is published, the pure function nextDue computes
// when it comes due (and why), and the grant keeps that time as one
// integer. A cron schedule (refresh.schedule) wakes the scheduler, which
// compares each grant's due time with now and queues the due ones; at most
// refresh.concurrency workers refresh them. At most one refresh per grant
// runs at a time: scheduled, manual (tokend refresh) and on-demand (a fetch
// of an expired token, or of one in its fetch margin) refreshes share it
// through singleflight. Fetches start refreshes within one bound per grant
// (mayRefreshOnDemand, policy.go): at most once per half token lifetime,
// never in a served token's first half of life. Each refresh
// is a round of exponential backoff with jitter that honours Retry-After and
// ends when the next try would land after the token's expiry. Failures are
// classified by package oauth; only transient ones are retried, and the
// grant's state says why a token is missing. Each request is counted as it
// returns (Metrics.ObserveAttempt, SetFailures), and the first failure of a
// round is logged at WARN at once (later ones at most every 5 minutes), so
// a failing provider shows while the token is still valid, not only when
// the round ends. Every HTTP request to a provider is counted by endpoint
// and outcome through the client's transport (provmetrics.go).
//
// # Fleet mode
//
// When the Store is also a Fleet (storage.go; store.backend: etcd),
// several instances share their grants and each grant has one refresher:
// the scheduler queues, and a refresh round sends, only what this instance
// Holds; the others take the holder's tokens from the fleet's Watch and
// serve them from memory like their own. fleet.go says how a fenced write,
// a lagging watch, a lost quorum and a dynamic registration are handled.
// Without a Fleet the rest of the daemon pays one nil check.
//
// # Time
//
// All time comes from a Clock (Options.Clock), so the scheduler, the
// backoff and expiry arithmetic are tested by moving a fake clock.
//
// # Caveats
//
// A refresh whose answer the provider sent but that tokend did not receive
// (the connection broke) may have rotated the refresh token already; the
// retry then uses the old one, and a provider that detects reuse revokes the
// chain. Nothing on the client side can close that window.
package daemon
