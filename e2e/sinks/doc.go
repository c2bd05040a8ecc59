// Package sinks tests tokend's file sinks end to end with the built binary:
// the real Prometheus reading a sink as its credentials_file across token
// rotations, the nginx recipe of docs/delivery.md with the real nginx proxying to an
// upstream across rotations, a reader that never sees a partial file, kill -9 of the
// writer at random moments, the owner and mode seen by real users, and a
// sink in a sticky shared directory whose temporary names another user
// tries to take first.
// It needs root (to play other users; without it the tests skip) and the
// Debian prometheus and nginx binaries (scripts/test-deps installs them;
// without them their tests fail, as make test and CI must run them).
package sinks
