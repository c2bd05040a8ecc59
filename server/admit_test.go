package server

import (
	"os"
	"testing"
)

// A descriptor that is no socket has no recorded groups: an error, and no
// list a caller could be judged by.
func TestPeerGroupsOfAPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if gs, err := peerGroups(int(r.Fd())); err == nil || gs != nil {
		t.Fatalf("peerGroups on a pipe: %v, %v; want an error and no groups", gs, err)
	}
}
