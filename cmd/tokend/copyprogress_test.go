package main

import (
	"strings"
	"testing"

	"github.com/tokend/tokend/store"
)

// countingDst is a copy destination that only counts grant imports.
type countingDst struct {
	copyStore
	n int
}

func (d *countingDst) ImportGrant(string, *store.Token, []store.Attempt) error {
	d.n++
	return nil
}

// A copy of many grants reports its progress as it goes; a small one
// stays quiet.
func TestStoreCopyShowsProgress(t *testing.T) {
	tc := newTestCLI()
	dst := &countingDst{}
	w := tc.withProgress(dst, store.Counts{Tokens: 5000, Histories: 4000})
	for range 5000 {
		if err := w.ImportGrant("g", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	want := "tokend: store copy: 1000 of 5000 grants copied\n" +
		"tokend: store copy: 2000 of 5000 grants copied\n" +
		"tokend: store copy: 3000 of 5000 grants copied\n" +
		"tokend: store copy: 4000 of 5000 grants copied\n"
	if tc.errOut.String() != want || dst.n != 5000 {
		t.Errorf("progress %q (%d written), want %q", tc.errOut.String(), dst.n, want)
	}

	tc = newTestCLI()
	w = tc.withProgress(&countingDst{}, store.Counts{Tokens: 100000})
	for range 100000 {
		w.ImportGrant("g", nil, nil)
	}
	if n := strings.Count(tc.errOut.String(), "\n"); n != 19 {
		t.Errorf("%d progress lines for 100,000 grants, want 19", n)
	}

	tc = newTestCLI()
	w = tc.withProgress(&countingDst{}, store.Counts{Tokens: 30})
	for range 30 {
		w.ImportGrant("g", nil, nil)
	}
	if tc.errOut.Len() != 0 {
		t.Errorf("a small copy reported progress: %q", tc.errOut.String())
	}
}
