// Package sink keeps token files for programs that read a file instead of
// asking the socket: per configured sink, a [Worker] writes the newest
// token it is offered (a [Token]) in the sink's format ([Content]) and
// runs the sink's command after each write, and reports its status and
// counts its writes.
//
// A file is written safely: its directory is opened with no symlink in
// any component and must be owned by root or tokend's user and writable
// by no one else unless sticky; the token goes into a temporary file of a
// random name there, given its owner and mode before any content, fsynced
// and renamed over the old file, and the directory is fsynced. In a shared
// (sticky) directory only files of tokend's user or the sink's owner are
// replaced or removed. [CheckPath] tells check-config what would stop a
// write.
//
// The engine decides which grants have which sinks and when a token is
// offered; this package never imports it.
package sink
