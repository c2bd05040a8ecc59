// Package clients tests tokend's credential helpers and tokend exec
// against the real clients: git (clone and fetch over HTTP from git
// http-backend, across a token rotation), kubectl (get --raw with an exec
// plugin in client.authentication.k8s.io/v1 and v1beta1), docker's
// credential helper protocol driven as docker drives it, and tokend exec
// (environment, exit status, a signal). Each also runs as a user who may
// not read the grant and checks the refusal; git also tries to leave a
// path-scoped match prefix through dot segments and encoded slashes. It needs root (the other
// user; it skips otherwise), git with git http-backend and kubectl
// (scripts/test-deps installs them); a missing client fails its test.
package clients
