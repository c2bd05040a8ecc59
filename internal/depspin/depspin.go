// Package depspin holds the modules issues 14 and 15 bring in while their
// packages are written in parallel; it is removed once they import them.
package depspin

import (
	_ "github.com/go-jose/go-jose/v4"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/client/v3/concurrency"
	_ "go.etcd.io/etcd/server/v3/embed"
)
