package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tokend/tokend/store"
)

// rekeyMarker is the key a rekey puts under the prefix while it runs:
// instances do not register while it exists, and a rekey killed midway
// finds it and carries on.
const rekeyMarker = "rekey"

// rekeyInstance writes the records a rekey re-seals.
const rekeyInstance = "tokend-rekey"

var errRekeying = errors.New("store: etcd: a rekey is in progress")

// rekeyRecord is the marker's value: the new key's check value, so that
// a rekey run again after a kill goes on only with the same new key.
type rekeyRecord struct {
	To      string    `json:"to"`
	Started time.Time `json:"started"`
}

// RekeyResult counts what Rekey did.
type RekeyResult struct {
	// Resealed records were sealed with the old key and are now sealed
	// with the new one; Already were sealed with the new one (a rekey
	// killed midway and run again).
	Resealed, Already int
	// Undecodable records open with neither key: left as they are,
	// reported (their grants' owners write them again).
	Undecodable []string
	// Dropped pending authorizations and start pages: they live minutes
	// and cannot be served while the fleet is stopped; they are started
	// again.
	Dropped int
}

// rekeyStop, when set (tests), is asked after each record re-sealed
// whether to stop there, as a kill would.
var rekeyStop func(resealed int) bool

// Rekey re-seals every record of the etcd store under o.Prefix, sealed
// with o.Key, with newKey (nil: unsealed), record by record, each in a
// transaction on the revision read. It refuses while instances of a fleet
// are live (registered or holding grants): they hold the old key. While it
// runs, a marker under the prefix keeps instances from starting. Killed
// midway, it is run again with the same keys and carries on: a record
// opens with either key meanwhile. The meta record's key check is switched
// to the new key last, with the marker removed, in one transaction.
func Rekey(ctx context.Context, o Options, newKey []byte) (RekeyResult, error) {
	var res RekeyResult
	oc, err := store.NewCodec(o.Key)
	if err != nil {
		return res, err
	}
	nc, err := store.NewCodec(newKey)
	if err != nil {
		return res, err
	}
	if len(o.Endpoints) == 0 {
		return res, errors.New("store: etcd: no endpoints given")
	}
	pfx := o.connectionDefaults()
	cli, err := newClient(ctx, o)
	if err != nil {
		return res, unavailable("connect", err)
	}
	defer cli.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	view := func(c *store.Codec) *Store {
		return &Store{cli: cli, pfx: pfx, codec: c, inst: rekeyInstance, log: o.Logger, clock: time.Now,
			reqTO: o.RequestTimeout, ctx: sctx, cancel: cancel, seen: map[string]int64{}, hist: map[string]histCache{}}
	}
	old, nw := view(oc), view(nc)
	where := fmt.Sprintf("etcd prefix %s", pfx)

	// The meta record holds the old key's check until the end.
	mk, rk := old.key("meta"), old.key(rekeyMarker)
	c, ccancel := old.req()
	mr, err := cli.Get(c, mk)
	ccancel()
	if err != nil {
		return res, unavailable("read the store's meta record", err)
	}
	if len(mr.Kvs) == 0 {
		return res, store.NewError(store.ErrCorrupt, nil, fmt.Sprintf("store: %s holds no tokend store", where))
	}
	var m metaRecord
	if err := json.Unmarshal(mr.Kvs[0].Value, &m); err != nil || m.Format != formatMagic {
		return res, store.NewError(store.ErrCorrupt, nil, fmt.Sprintf("store: %s is not a tokend store", where))
	}
	if m.Schema > schemaVersion {
		return res, store.NewError(store.ErrNewerSchema, nil, fmt.Sprintf("store: %s has schema %d, newer than this tokend's %d", where, m.Schema, schemaVersion))
	}
	if err := oc.VerifyCheck(m.Check, where); err != nil {
		return res, err
	}

	// The marker: put, or found from a rekey killed midway.
	mv, _ := json.Marshal(rekeyRecord{To: nc.Check(), Started: time.Now().UTC()})
	c, ccancel = old.req()
	tr, err := cli.Txn(c).If(clientv3.Compare(clientv3.CreateRevision(rk), "=", 0)).
		Then(clientv3.OpPut(rk, string(mv))).Else(clientv3.OpGet(rk)).Commit()
	ccancel()
	if err != nil {
		return res, unavailable("mark the rekey", err)
	}
	created := tr.Succeeded
	if !created {
		kvs := tr.Responses[0].GetResponseRange().Kvs
		var rr rekeyRecord
		if len(kvs) == 0 || json.Unmarshal(kvs[0].Value, &rr) != nil {
			return res, store.NewError(store.ErrCorrupt, nil, fmt.Sprintf("store: %s: the rekey marker does not decode", where))
		}
		if err := nc.VerifyCheck(rr.To, where); err != nil {
			return res, fmt.Errorf("store: %s: a rekey to another key was started and not finished (since %s): run it again with that new key", where, rr.Started.Format(time.RFC3339))
		}
		o.Logger.Info("store: etcd: carrying on with a rekey started earlier", "prefix", pfx, "started", rr.Started)
	}
	// After the marker: an instance registering now is refused; one
	// registered before is seen here.
	live, err := old.LiveFleet()
	if err != nil {
		return res, err
	}
	if len(live) > 0 {
		if created {
			c, ccancel = old.req()
			_, _ = cli.Delete(c, rk)
			ccancel()
		}
		return res, store.NewError(store.ErrLocked, nil, fmt.Sprintf("store: %s is in use by running instances (%s): they hold the old key; stop every instance first, rekey, set the new key on every host, then start them", where, strings.Join(live, ", ")))
	}

	// Re-seal until a pass finds no record it did not write itself (a
	// write from an instance stopped in the middle of a request is caught
	// by the next pass).
	mine := map[string]int64{}
	for pass := 0; ; pass++ {
		if pass == 5 {
			return res, fmt.Errorf("store: %s: records sealed with the old key keep appearing: is an instance still writing?", where)
		}
		n, err := rekeyPass(old, nw, &res, mine, pass == 0)
		if err != nil {
			return res, err
		}
		if n == 0 {
			break
		}
	}
	if err := rekeyProviders(old, nw, &res); err != nil {
		return res, err
	}
	// Pending authorizations and start pages are dropped (started again);
	// the grants' definitions too: the first instance to name a grant
	// records it again, sealed as it seals.
	for _, kind := range []string{"pending/", "starts/", "defs/"} {
		c, ccancel = old.req()
		dr, err := cli.Delete(c, old.key(kind), clientv3.WithPrefix())
		ccancel()
		if err != nil {
			return res, unavailable("drop "+kind, err)
		}
		if kind != "defs/" {
			res.Dropped += int(dr.Deleted)
		}
	}
	sort.Strings(res.Undecodable)

	m.Check = nc.Check()
	nm, _ := json.Marshal(m)
	c, ccancel = old.req()
	tr, err = cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(mk), "=", mr.Kvs[0].ModRevision), clientv3.Compare(clientv3.CreateRevision(rk), ">", 0)).
		Then(clientv3.OpPut(mk, string(nm)), clientv3.OpDelete(rk)).Commit()
	ccancel()
	if err != nil {
		return res, unavailable("switch the store's key check", err)
	}
	if !tr.Succeeded {
		return res, fmt.Errorf("store: %s: the meta record or the rekey marker changed during the rekey: run it again", where)
	}
	o.Logger.Info("store: etcd: rekeyed", "prefix", pfx, "resealed", res.Resealed, "already", res.Already, "encrypted", nc.Sealed())
	return res, nil
}

// errRekeyStopped is a stop asked by rekeyStop.
var errRekeyStopped = errors.New("store: etcd: rekey stopped (test)")

// rekeyPass re-seals every record that opens with the old key and that
// the rekey did not write itself (mine: key -> revision written), each in
// a transaction on its revision; it returns how many records it met that
// were not its own and not sealed with the new key already.
func rekeyPass(old, nw *Store, res *RekeyResult, mine map[string]int64, first bool) (int, error) {
	n := 0
	// The new key is tried first when it seals (a record it opens is
	// done); otherwise the old one, since an unsealed codec would take a
	// sealed value for plain text.
	oldFirst := !nw.codec.Sealed()
	type conv func(name string, v []byte) (out []byte, already bool, err error)
	either := func(dec func(s *Store, name string, v []byte) ([]byte, error)) conv {
		return func(name string, v []byte) ([]byte, bool, error) {
			order := []*Store{old, nw}
			if !oldFirst {
				order = []*Store{nw, old}
			}
			for _, s := range order {
				out, err := dec(s, name, v)
				if err == nil {
					return out, s == nw, nil
				}
			}
			return nil, false, store.NewError(store.ErrCorrupt, nil, "store: record opens with neither key")
		}
	}
	kinds := []struct {
		kind string
		conv conv
	}{
		{"tokens/", either(func(s *Store, name string, v []byte) ([]byte, error) {
			t, _, err := s.decodeToken(name, v)
			if err != nil || s == nw {
				return nil, err
			}
			tv, err := nw.encodeToken(t)
			return []byte(tv), err
		})},
		{"clients/", either(func(s *Store, name string, v []byte) ([]byte, error) {
			cl, err := s.codec.DecodeClient(name, v)
			if err != nil || s == nw {
				return nil, err
			}
			return nw.codec.EncodeClient(cl)
		})},
		{"history/", either(func(s *Store, name string, v []byte) ([]byte, error) {
			raw, err := s.codec.DecodeHistory(name, v)
			if err != nil || s == nw {
				return nil, err
			}
			return nw.codec.EncodeHistory(name, raw)
		})},
	}
	for _, k := range kinds {
		p := old.key(k.kind)
		_, err := old.walk(old.ctx, p, false, func(kv *mvccpb.KeyValue) error {
			name := string(kv.Key[len(p):])
			if mine[string(kv.Key)] == kv.ModRevision {
				return nil
			}
			out, already, err := k.conv(name, kv.Value)
			switch {
			case err != nil:
				if first {
					res.Undecodable = append(res.Undecodable, k.kind+name)
				}
				return nil
			case already:
				if first {
					res.Already++
				}
				return nil
			}
			c, cancel := old.req()
			tr, err := old.cli.Txn(c).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
				Then(clientv3.OpPut(string(kv.Key), string(out))).Commit()
			cancel()
			if err != nil {
				return unavailable("re-seal "+k.kind+name, err)
			}
			n++ // changed meanwhile, or re-sealed: the next pass looks again
			if tr.Succeeded {
				mine[string(kv.Key)] = tr.Header.Revision
				res.Resealed++
				if rekeyStop != nil && rekeyStop(res.Resealed) {
					return errRekeyStopped
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// rekeyProviders re-seals the cached provider documents through the
// store's own read and write of them (Provider, PutProvider), so they
// follow whatever those do to a record; a document that opens with
// neither key is deleted (a cache: fetched again).
func rekeyProviders(old, nw *Store, res *RekeyResult) error {
	p := old.key("providers/")
	var names []string
	_, err := old.walk(old.ctx, p, true, func(kv *mvccpb.KeyValue) error {
		names = append(names, string(kv.Key[len(p):]))
		return nil
	})
	if err != nil {
		return err
	}
	first, second := old, nw
	if nw.codec.Sealed() {
		first, second = nw, old
	}
	for _, name := range names {
		meta, err := first.Provider(name)
		from := first
		if err != nil {
			meta, err = second.Provider(name)
			from = second
		}
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case errors.Is(err, store.ErrCorrupt), errors.Is(err, store.ErrWrongKey):
			c, cancel := old.req()
			_, derr := old.cli.Delete(c, p+name)
			cancel()
			if derr != nil {
				return unavailable("drop provider "+name, derr)
			}
			continue
		case err != nil:
			return err
		case from == nw:
			res.Already++
			continue
		}
		if err := nw.PutProvider(name, meta); err != nil {
			return err
		}
		res.Resealed++
	}
	return nil
}
