package etcdstore

import (
	"encoding/json"

	"github.com/tokend/tokend/store"
)

// maxHistCache bounds the histories PutToken keeps to append to without
// reading them first.
const maxHistCache = 4096

// readHistory reads grant's history record.
func (s *Store) readHistory(grant string) (histCache, error) {
	ctx, cancel := s.req()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key("history/"+grant))
	if err != nil {
		s.noteErr(err)
		return histCache{}, unavailable("read history", err)
	}
	if len(resp.Kvs) == 0 {
		return histCache{}, nil
	}
	v, err := s.codec.DecodeHistory(grant, resp.Kvs[0].Value)
	if err != nil {
		// The revision goes with the error: a writer replaces the record.
		return histCache{rev: resp.Kvs[0].ModRevision}, err
	}
	return histCache{rev: resp.Kvs[0].ModRevision, v: v}, nil
}

// History returns the grant's last attempts, newest first.
func (s *Store) History(grant string) ([]store.Attempt, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	hc, err := s.readHistory(grant)
	if err != nil {
		return nil, err
	}
	return s.decodeHistory(grant, hc.v)
}

func (s *Store) decodeHistory(grant string, v []json.RawMessage) ([]store.Attempt, error) {
	var as []store.Attempt
	for _, r := range v[:min(len(v), store.HistoryLen)] {
		a, err := s.codec.DecodeAttempt(grant, r)
		if err != nil {
			return nil, err
		}
		as = append(as, a)
	}
	return as, nil
}
