package main

import (
	"errors"
	"log/slog"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
)

// openEtcdStore opens the etcd store of fleet mode. Until store/etcdstore
// (branch fleet15) is merged this build cannot, and says so.
func openEtcdStore(c config.Store, instance string, log *slog.Logger) (daemon.Store, error) {
	return nil, errors.New("store.backend etcd: this build of tokend has no etcd store")
}
