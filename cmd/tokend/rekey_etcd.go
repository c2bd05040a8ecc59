package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store/etcdstore"
)

// rekeyEtcd re-seals the etcd store of the configuration's store.etcd
// section from oldKey to newKey and prints what it did.
func rekeyEtcd(ctx context.Context, w io.Writer, cfgPath, newKeyFile string, c config.Store, oldKey, newKey []byte) error {
	e := c.Etcd
	tc, err := etcdTLS(c)
	if err != nil {
		return err
	}
	res, err := etcdstore.Rekey(ctx, etcdstore.Options{
		Endpoints: e.Endpoints, Prefix: e.Prefix, Username: e.Username, Password: e.Password.Reveal(),
		TLS: tc, DialTimeout: e.DialTimeout, Key: oldKey,
	}, newKey)
	if err != nil {
		return err
	}
	prefix := e.Prefix
	if prefix == "" {
		prefix = etcdstore.DefaultPrefix
	}
	where := fmt.Sprintf("etcd (%s, prefix %s)", strings.Join(e.Endpoints, ","), prefix)
	if newKey != nil {
		fmt.Fprintf(w, "Re-sealed the records in %s with the key in %s: %d re-sealed, %d were already.\n", where, newKeyFile, res.Resealed, res.Already)
	} else {
		fmt.Fprintf(w, "The records in %s are now stored unsealed: %d rewritten, %d were already.\n", where, res.Resealed, res.Already)
	}
	if res.Dropped > 0 {
		fmt.Fprintf(w, "Dropped %d pending authorizations and start pages: start them again with tokend authorize.\n", res.Dropped)
	}
	if len(res.Undecodable) > 0 {
		fmt.Fprintf(w, "Left as they were, opening with neither key: %s.\n", strings.Join(res.Undecodable, ", "))
	}
	if newKey != nil {
		fmt.Fprintf(w, "On every host of the fleet, before starting tokend, set in %s:\n\n    store:\n      key_file: %s\n\n", cfgPath, newKeyFile)
		fmt.Fprintln(w, "(or replace the tokend.key credential with that key and leave key_file unset).")
	} else {
		fmt.Fprintf(w, "On every host of the fleet, before starting tokend, remove store.key_file from %s and the tokend.key credential.\n", cfgPath)
	}
	return nil
}
