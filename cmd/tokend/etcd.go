package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/store/etcdstore"
)

// openEtcdStore opens the etcd store of fleet mode from the store section
// (config.Load has read the password and checked the TLS files).
func openEtcdStore(c config.Store, instance string, log *slog.Logger) (daemon.Store, error) {
	e := c.Etcd
	tc, err := etcdTLS(c)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.DialTimeout+e.LeaseTTL)
	defer cancel()
	return etcdstore.Open(ctx, etcdstore.Options{
		Endpoints:   e.Endpoints,
		Prefix:      e.Prefix,
		Username:    e.Username,
		Password:    e.Password.Reveal(),
		TLS:         tc,
		DialTimeout: e.DialTimeout,
		LeaseTTL:    e.LeaseTTL,
		Key:         c.Key,
		Instance:    instance,
		Logger:      log,
	})
}

// etcdTLS is the TLS configuration of https endpoints: the system's roots
// unless tls.ca_file names others, and the client certificate if any. nil
// when every endpoint is plain http (config allows that only on loopback).
func etcdTLS(c config.Store) (*tls.Config, error) {
	e := c.Etcd
	https := false
	for _, ep := range e.Endpoints {
		if strings.HasPrefix(ep, "https://") {
			https = true
		}
	}
	if !https && e.TLS.CAFile == "" && e.TLS.CertFile == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.TLS.CAFile != "" {
		b, err := os.ReadFile(e.TLS.CAFile)
		if err != nil {
			return nil, fmt.Errorf("store.etcd.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("store.etcd.tls.ca_file: %s holds no PEM certificate", e.TLS.CAFile)
		}
		tc.RootCAs = pool
	}
	if e.TLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(e.TLS.CertFile, e.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("store.etcd.tls: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
