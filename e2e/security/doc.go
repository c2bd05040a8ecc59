// Package security holds end-to-end tests of tokend's access control and of
// its handling of secrets, run against the built binary: `tokend serve` as
// root, its command line as other users (uid 65534 and 65533 through
// SysProcAttr credentials), and an in-process provider (devprovider) on
// loopback.
//
// # Caveats
//
// The tests need root, to start clients as other users; elsewhere they skip
// and say so. The binary and the socket live in a directory created with
// mode 0755 under the system temporary directory so that other users can
// reach them; the store's directory stays 0700.
package security
