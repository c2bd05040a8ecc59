package etcdstore

import (
	"errors"
	"fmt"

	"github.com/tokend/tokend/store"
)

// Client returns a stored client, or store.ErrNotFound.
func (s *Store) Client(name string) (store.Client, error) {
	if err := s.check(); err != nil {
		return store.Client{}, err
	}
	v, err := s.get("clients/"+name, "read client")
	if err != nil {
		return store.Client{}, err
	}
	if v == nil {
		return store.Client{}, store.NewError(store.ErrNotFound, nil, fmt.Sprintf("store: no client %q", name))
	}
	return s.codec.DecodeClient(name, v)
}

// PutClient stores a client, replacing one of the same name.
func (s *Store) PutClient(c store.Client) error {
	if c.Name == "" {
		return errors.New("store: client has no name")
	}
	if err := s.check(); err != nil {
		return err
	}
	v, err := s.codec.EncodeClient(c)
	if err != nil {
		return fmt.Errorf("store: encode client: %w", err)
	}
	return s.put("clients/"+c.Name, string(v), "write client")
}

// Provider returns cached provider metadata, or store.ErrNotFound.
func (s *Store) Provider(name string) ([]byte, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	v, err := s.get("providers/"+name, "read provider")
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, store.NewError(store.ErrNotFound, nil, fmt.Sprintf("store: no cached metadata for provider %q", name))
	}
	return s.codec.DecodeProvider(name, v)
}

// PutProvider caches provider metadata, replacing what was cached.
func (s *Store) PutProvider(name string, meta []byte) error {
	if name == "" {
		return errors.New("store: provider has no name")
	}
	if err := s.check(); err != nil {
		return err
	}
	return s.put("providers/"+name, string(s.codec.EncodeProvider(name, meta)), "write provider")
}

// get returns the value of key, nil when absent (never nil when present).
func (s *Store) get(key, op string) ([]byte, error) {
	ctx, cancel := s.req()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key(key))
	if err != nil {
		s.noteErr(err)
		return nil, unavailable(op, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	v := resp.Kvs[0].Value
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (s *Store) put(key, v, op string) error {
	ctx, cancel := s.req()
	defer cancel()
	_, err := s.cli.Put(ctx, s.key(key), v)
	if err != nil {
		s.noteErr(err)
		return unavailable(op, err)
	}
	return nil
}
