// Command provider runs the in-process test OAuth server (internal/devprovider)
// as a process of its own, for the systemd end-to-end test: tokend runs
// under a real systemd inside a container there, and its provider must be
// a process inside that container too. It is test-only and never shipped.
//
// It registers one confidential client whose secret it reads from a file
// (a secret on a command line is readable by every local user) and serves
// until SIGTERM. Under systemd (Type=notify) it reports READY=1 once it
// listens.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tokend/tokend/internal/devprovider"
	"github.com/tokend/tokend/systemd"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9400", "listen address (loopback)")
	clientID := flag.String("client-id", "tokend-e2e", "the client's id")
	secretFile := flag.String("client-secret-file", "", "file holding the client's secret")
	ttl := flag.Duration("ttl", 30*time.Second, "access token lifetime")
	flag.Parse()
	b, err := os.ReadFile(*secretFile)
	if err != nil {
		log.Fatalf("provider: %v", err)
	}
	srv := devprovider.NewUnstarted(devprovider.Options{
		AccessTTL:  *ttl,
		RefreshTTL: 24 * time.Hour,
		Rotate:     true,
		Clients: []devprovider.Client{{
			ID: *clientID, Secret: strings.TrimSpace(string(b)), AuthMethod: "client_secret_basic",
		}},
		Logf: func(format string, args ...any) { log.Printf(format, args...) },
	})
	if err := srv.Start(*addr); err != nil {
		log.Fatal(err)
	}
	fmt.Println("provider listening on", srv.URL())
	// Under systemd-run -p Type=notify, the start returns once this
	// provider listens.
	if err := systemd.Ready(); err != nil {
		log.Print(err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	srv.Close()
}
