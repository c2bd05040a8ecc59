package main

import (
	"fmt"
	"io"

	"github.com/tokend/tokend/store"
)

// progressStore is a copy destination that reports on w how many grants
// were written, every `every` grants: a copy of 100,000 grants into etcd
// takes minutes, and a silent one looks hung.
type progressStore struct {
	copyStore
	w            io.Writer
	every, total int
	n            int
}

func (p *progressStore) ImportGrant(grant string, t *store.Token, as []store.Attempt) error {
	if err := p.copyStore.ImportGrant(grant, t, as); err != nil {
		return err
	}
	p.n++
	if p.n%p.every == 0 && p.n < p.total {
		fmt.Fprintf(p.w, "tokend: store copy: %d of %d grants copied\n", p.n, p.total)
	}
	return nil
}

// withProgress wraps dst to report progress on stderr when the copy has
// enough grants to take a while: a line every 1,000 grants, at most about
// 20 lines.
func (c *cli) withProgress(dst copyStore, want store.Counts) copyStore {
	total := max(want.Tokens, want.Histories)
	const minEvery = 1000
	if total < 2*minEvery {
		return dst
	}
	return &progressStore{copyStore: dst, w: c.stderr, every: max(minEvery, total/20), total: total}
}
