package etcdstore

import (
	"context"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// pageSize is how many keys one range request of a walk reads.
const pageSize = 1000

// walk calls fn with every key under prefix (in key order) as of one
// revision, which it returns, reading it in pages. fn's error stops it
// and is returned as it is.
func (s *Store) walk(ctx context.Context, prefix string, keysOnly bool, fn func(kv *mvccpb.KeyValue) error) (int64, error) {
	return s.walkPages(ctx, prefix, keysOnly, func(kvs []*mvccpb.KeyValue) error {
		for _, kv := range kvs {
			if err := fn(kv); err != nil {
				return err
			}
		}
		return nil
	})
}

// walkPages is walk a page at a time.
func (s *Store) walkPages(ctx context.Context, prefix string, keysOnly bool, fn func(kvs []*mvccpb.KeyValue) error) (int64, error) {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageSize), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		if keysOnly {
			opts = append(opts, clientv3.WithKeysOnly())
		}
		rctx, cancel := context.WithTimeout(ctx, s.reqTO)
		resp, err := s.cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			s.noteErr(err)
			return 0, unavailable("read "+strings.TrimPrefix(prefix, s.pfx), err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		if err := fn(resp.Kvs); err != nil {
			return rev, err
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// errStop carries fn's error out of walk unchanged.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }
