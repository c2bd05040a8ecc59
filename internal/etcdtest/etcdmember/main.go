// Command etcdmember runs one member of a test etcd cluster as a process,
// for the end-to-end tests that kill or pause members: the test plans the
// cluster with etcdtest.Plan and starts one etcdmember per member.
//
//	etcdmember -name m0 -dir DIR -peer http://127.0.0.1:P -client http://127.0.0.1:C \
//	    -cluster m0=http://...,m1=... [-token T] [-listen-peer URL] [-nofsync] [-log FILE]
//
// It prints "ready" on standard output once the member has joined its
// cluster, and runs until killed (SIGTERM or SIGINT: a clean stop).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tokend/tokend/internal/etcdtest"
)

func main() {
	var m etcdtest.Member
	var logPath string
	flag.StringVar(&m.Name, "name", "", "member name")
	flag.StringVar(&m.Dir, "dir", "", "data directory")
	flag.StringVar(&m.PeerURL, "peer", "", "peer URL")
	flag.StringVar(&m.ListenPeerURL, "listen-peer", "", "peer URL to listen on when a relay stands on -peer (default: -peer)")
	flag.StringVar(&m.ClientURL, "client", "", "client URL")
	flag.StringVar(&m.InitialCluster, "cluster", "", "initial cluster: name=peerURL,...")
	flag.StringVar(&m.ClusterToken, "token", "etcdtest", "initial cluster token")
	flag.BoolVar(&m.NoFsync, "nofsync", false, "skip fsync")
	flag.StringVar(&logPath, "log", "", "log file (default: none)")
	flag.Parse()
	if m.Name == "" || m.Dir == "" || m.PeerURL == "" || m.ClientURL == "" || m.InitialCluster == "" {
		fmt.Fprintln(os.Stderr, "etcdmember: -name, -dir, -peer, -client and -cluster are required")
		os.Exit(2)
	}
	var log io.Writer
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintln(os.Stderr, "etcdmember:", err)
			os.Exit(1)
		}
		defer f.Close()
		log = f
	}
	e, err := m.Start(log, 60*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
	}
	e.Close()
}
