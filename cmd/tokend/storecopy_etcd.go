package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store/etcdstore"
)

func init() { openEtcdCopy = openEtcdForCopy }

// copyInstance is the fleet instance name a copy connects as: it names no
// grant, so it takes part in no campaign.
const copyInstance = "tokend-store-copy"

var (
	_ copyStore = (*etcdstore.Store)(nil)
	_ liveStore = (*etcdstore.Store)(nil)
)

// openEtcdForCopy opens the etcd store of the configuration's store.etcd
// section with the store key, as serve does.
func openEtcdForCopy(_ context.Context, cfg *config.Config) (copyStore, string, error) {
	st, err := openEtcdStore(cfg.Store, copyInstance, nil)
	if err != nil {
		return nil, "", err
	}
	s, ok := st.(copyStore)
	if !ok {
		st.Close()
		return nil, "", errors.New("the etcd store cannot be enumerated")
	}
	prefix := cfg.Store.Etcd.Prefix
	if prefix == "" {
		prefix = etcdstore.DefaultPrefix
	}
	return s, fmt.Sprintf("etcd (%s, prefix %s)", strings.Join(cfg.Store.Etcd.Endpoints, ","), prefix), nil
}
