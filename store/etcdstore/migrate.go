package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
)

// legacyTokenMagic began a token record of schema 1: a clear header
// naming the writer and the time, then the record with its secret fields
// alone sealed.
const legacyTokenMagic = "tokend-token-v1\n"

// migrateBatch is how many records one migration transaction rewrites
// (etcd's default limit is 128 operations per transaction).
const migrateBatch = 64

// migrate takes a store from schema 1 (secret fields sealed one by one,
// everything else clear and unauthenticated) to store.RecordSchema (every
// record sealed whole by store.Codec), then marks the meta record meta.
// A genuine store of schema 1 created its meta record before any record
// (Open creates it first and never rewrites it at that schema), so a
// record older than it means the meta record was deleted and planted
// again: the migration is refused. Each record is rewritten by a transaction on
// its mod revision, so a record changed meanwhile (another instance
// migrating too) is left to that writer; a record already in the new
// format is kept. Pending authorizations and start pages are deleted, not
// migrated: they live minutes, a person starts one again, and one in the
// old format cannot be told from one planted without the key. A record
// that decodes in neither format is left as it is and logged: it is
// refused when read. After the meta record is marked, the old format is
// refused everywhere.
func (s *Store) migrate(ctx context.Context, meta *mvccpb.KeyValue, m metaRecord) error {
	start := time.Now()
	from := m.Schema
	n := 0
	kinds := []struct {
		kind string
		conv func(name string, v []byte) ([]byte, error) // nil, nil: keep
	}{
		{"tokens/", s.migrateToken},
		{"clients/", func(name string, v []byte) ([]byte, error) {
			if _, err := s.codec.DecodeClient(name, v); err == nil {
				return nil, nil
			}
			c, err := s.codec.DecodeClientFields(name, v)
			if err != nil {
				return nil, err
			}
			return s.codec.EncodeClient(c)
		}},
		{"providers/", func(name string, v []byte) ([]byte, error) {
			if _, err := s.codec.DecodeProvider(name, v); err == nil {
				return nil, nil
			}
			if !json.Valid(v) {
				return nil, fmt.Errorf("not JSON")
			}
			return s.codec.EncodeProvider(name, v), nil
		}},
		{"history/", func(grant string, v []byte) ([]byte, error) {
			if _, err := s.codec.DecodeHistory(grant, v); err == nil {
				return nil, nil
			}
			var raw []json.RawMessage
			if err := json.Unmarshal(v, &raw); err != nil {
				return nil, fmt.Errorf("not a JSON array")
			}
			return s.codec.EncodeHistory(grant, raw)
		}},
		{"defs/", func(grant string, v []byte) ([]byte, error) {
			if _, _, err := s.codec.DecodeDef(grant, v); err == nil {
				return nil, nil
			}
			var d struct {
				FP string `json:"fingerprint"`
				By string `json:"by"`
			}
			if err := json.Unmarshal(v, &d); err != nil {
				return nil, fmt.Errorf("not JSON")
			}
			return s.codec.EncodeDef(grant, d.FP, d.By)
		}},
	}
	for _, k := range kinds {
		c, err := s.migrateKind(ctx, k.kind, meta.CreateRevision, k.conv)
		n += c
		if err != nil {
			return err
		}
	}
	for _, kind := range []string{"pending/", "starts/"} {
		rctx, cancel := context.WithTimeout(ctx, s.reqTO)
		_, err := s.cli.Delete(rctx, s.key(kind), clientv3.WithPrefix())
		cancel()
		if err != nil {
			return unavailable("migrate: delete "+kind, err)
		}
	}
	m.Schema = schemaVersion
	m.Check = s.codec.Check()
	mv, _ := json.Marshal(m)
	mk := s.key("meta")
	rctx, cancel := context.WithTimeout(ctx, s.reqTO)
	resp, err := s.cli.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(mk), "=", meta.ModRevision)).Then(clientv3.OpPut(mk, string(mv))).Else(clientv3.OpGet(mk)).Commit()
	cancel()
	if err != nil {
		return unavailable("migrate: mark the meta record", err)
	}
	if !resp.Succeeded {
		// Another instance marked it first: check what it wrote.
		kvs := resp.Responses[0].GetResponseRange().Kvs
		var nm metaRecord
		if len(kvs) == 0 || json.Unmarshal(kvs[0].Value, &nm) != nil || nm.Schema != schemaVersion {
			return store.NewError(store.ErrCorrupt, nil, fmt.Sprintf("store: etcd prefix %s: the meta record changed during the migration to schema %d", s.pfx, schemaVersion))
		}
		if err := s.codec.VerifyCheckAt(nm.Check, nm.Schema, fmt.Sprintf("etcd prefix %s", s.pfx)); err != nil {
			return err
		}
	}
	s.log.Info("store: etcd store migrated: every record sealed whole", "prefix", s.pfx, "from", from, "to", schemaVersion, "records", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// migrateToken converts a token record of schema 1, its header's writer
// and time moved inside the sealed record.
func (s *Store) migrateToken(grant string, v []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(v, []byte(legacyTokenMagic))
	if !ok {
		if _, _, err := s.decodeToken(grant, v); err == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("neither format")
	}
	writer, rest, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("no header")
	}
	at, rec, ok := bytes.Cut(rest, []byte("\n"))
	if !ok {
		return nil, fmt.Errorf("no header")
	}
	t, err := s.codec.DecodeTokenFields(grant, rec)
	if err != nil {
		return nil, err
	}
	o := store.Origin{Writer: string(writer)}
	o.At, _ = time.Parse(time.RFC3339Nano, string(at))
	return s.codec.EncodeTokenFrom(t, o)
}

// migrateKind rewrites the records under kind that conv converts, in
// transactions of migrateBatch on their mod revisions; it returns how
// many it rewrote.
func (s *Store) migrateKind(ctx context.Context, kind string, metaCreated int64, conv func(name string, v []byte) ([]byte, error)) (int, error) {
	p := s.key(kind)
	type rw struct {
		key string
		rev int64
		v   []byte
	}
	var batch []rw
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		cmps := make([]clientv3.Cmp, len(batch))
		ops := make([]clientv3.Op, len(batch))
		for i, r := range batch {
			cmps[i] = clientv3.Compare(clientv3.ModRevision(r.key), "=", r.rev)
			ops[i] = clientv3.OpPut(r.key, string(r.v))
		}
		rctx, cancel := context.WithTimeout(ctx, s.reqTO)
		resp, err := s.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			return unavailable("migrate "+kind, err)
		}
		if resp.Succeeded {
			n += len(batch)
		} else {
			// One moved: the rest one by one; a moved one was written
			// by a migrating instance (new format) and is left alone.
			for _, r := range batch {
				rctx, cancel := context.WithTimeout(ctx, s.reqTO)
				resp, err := s.cli.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(r.key), "=", r.rev)).Then(clientv3.OpPut(r.key, string(r.v))).Commit()
				cancel()
				if err != nil {
					return unavailable("migrate "+kind, err)
				}
				if resp.Succeeded {
					n++
				}
			}
		}
		batch = batch[:0]
		return nil
	}
	_, err := s.walk(ctx, p, false, func(kv *mvccpb.KeyValue) error {
		name := string(kv.Key[len(p):])
		if kv.CreateRevision < metaCreated {
			return store.NewError(store.ErrCorrupt, nil, fmt.Sprintf("store: etcd prefix %s: record %s%s is older than the meta record, which was therefore planted again: not migrating", s.pfx, kind, name))
		}
		nv, err := conv(name, kv.Value)
		if err != nil {
			s.log.Warn("store: etcd migration: a record decodes in neither format; left as it is, and refused when read", "record", kind+name, "err", err)
			return nil
		}
		if nv == nil {
			return nil
		}
		batch = append(batch, rw{key: string(kv.Key), rev: kv.ModRevision, v: nv})
		if len(batch) == migrateBatch {
			return flush()
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, flush()
}
