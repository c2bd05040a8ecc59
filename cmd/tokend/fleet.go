package main

import (
	"log/slog"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
)

// fleetOpenStore is the daemon's Options.OpenStore in fleet mode
// (store.backend: etcd), nil otherwise (the bbolt file). The store is
// opened once, at start: a reload does not move an instance to another
// etcd, prefix or instance name (restart for that).
func fleetOpenStore(cfg *config.Config) func(config.Store, *slog.Logger) (daemon.Store, error) {
	if !cfg.Store.FleetMode() {
		return nil
	}
	instance := cfg.Fleet.Instance
	return func(c config.Store, log *slog.Logger) (daemon.Store, error) {
		return openEtcdStore(c, instance, log)
	}
}
