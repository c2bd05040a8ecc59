package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/daemon"
	"github.com/tokend/tokend/metrics"
	"github.com/tokend/tokend/server"
	"github.com/tokend/tokend/systemd"
)

// runServe runs the daemon from a config file until SIGTERM or SIGINT;
// SIGHUP reloads the file, keeping the old configuration if the new one
// is invalid.
func runServe(ctx context.Context, args []string) error {
	return newCLI().runServe(ctx, args)
}

func (c *cli) runServe(ctx context.Context, args []string) error {
	fs := c.flagSet("serve", "serve [--config FILE]")
	path := fs.String("config", config.DefaultFile, "configuration `FILE`")
	if code, ok := c.parseFlags(fs, args); !ok {
		return codeError(code)
	}
	// Files and sockets are created private; the socket's mode is then set
	// deliberately from listen.socket_mode.
	unix.Umask(0o077)
	cfg, warnings, err := config.Load(*path)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, warnings, func() (*config.Config, []string, error) {
		return config.Load(*path)
	}, nil)
}

// serve builds the engine (package daemon) and the servers that face the
// host (package server), wires them to metrics and systemd and runs them. reload, when
// set, reads the configuration again, on SIGHUP or POST /v1/reload (`tokend
// reload`); the daemon logs its warnings and errors. ready, when set, is
// called once started.
func serve(ctx context.Context, cfg *config.Config, warnings []string, reload func() (*config.Config, []string, error), ready func(*daemon.Daemon)) error {
	log := daemon.NewLogger(os.Stderr, cfg.Log, systemd.UnderJournal())
	for _, w := range warnings {
		log.Warn("configuration", "warning", w)
	}
	m := metrics.New(metrics.BuildInfo{Version: currentBuild().version, Revision: buildRevision(), GoVersion: runtime.Version()})
	opts := daemon.Options{
		Logger:     log,
		Metrics:    m,
		Notifier:   sdNotifier{},
		LoadConfig: reload,
		OpenStore:  fleetOpenStore(cfg),
	}
	sc := server.Config{
		Log:            log,
		Metrics:        m,
		MetricsHandler: func(r func() error) http.Handler { return m.Handler(r) },
	}
	if d, ok := systemd.WatchdogInterval(); ok {
		opts.WatchdogInterval = d
		// The watchdog's signal (WatchdogSignal=SIGQUIT) writes a short
		// dump instead of the runtime's (dump.go).
		defer dumpOnQuit(os.Stderr, os.Exit)()
	}
	lns, err := systemd.Listeners()
	if err != nil {
		return fmt.Errorf("socket activation: %w", err)
	}
	if l := pickListener(lns); l != nil {
		sc.SocketListener = l
		log.Info("using the socket passed by systemd", "addr", l.Addr().String())
		if w := passedSocketWarning(l, cfg, os.Getegid()); w != "" {
			log.Warn(w)
		}
	}
	d, err := daemon.New(cfg, opts)
	if err != nil {
		return err
	}
	if reload != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					// ReloadConfig logs the outcome; `tokend reload`
					// is the way to learn it synchronously.
					_, _ = d.ReloadConfig()
				}
			}
		}()
	}
	if ready != nil {
		go func() {
			select {
			case <-d.Started():
				ready(d)
			case <-ctx.Done():
			}
		}()
	}
	// The engine and the servers in front of it run together: Run binds
	// the servers once the store is open and stops them first.
	sc.Engine = d
	err = d.Run(ctx, server.New(sc))
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// pickListener takes the fetch socket systemd passed: the one named "api"
// (FileDescriptorName=api), else the only one.
func pickListener(lns map[string][]net.Listener) net.Listener {
	if l := lns["api"]; len(l) > 0 {
		return l[0]
	}
	for _, l := range lns {
		if len(l) > 0 {
			return l[0]
		}
	}
	return nil
}

type sdNotifier struct{}

func (sdNotifier) Ready() error            { return systemd.Ready() }
func (sdNotifier) Reloading() error        { return systemd.Reloading() }
func (sdNotifier) Status(msg string) error { return systemd.Status(msg) }
func (sdNotifier) Stopping() error         { return systemd.Stopping() }
func (sdNotifier) Watchdog() error         { return systemd.Watchdog() }
