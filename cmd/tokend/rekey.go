package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store"
)

// cmdRekey re-seals the store's secrets with a new key (or unseals them
// with --decrypt), offline: the daemon must be stopped, since it holds the
// store's lock. With store.backend: etcd it re-seals the etcd store, every
// instance of the fleet stopped (etcdstore.Rekey refuses otherwise). The current key comes from the configuration (store.key_file
// or the tokend.key credential) unless --old-key-file is given.
func (c *cli) cmdRekey(ctx context.Context, args []string) int {
	fs := c.flagSet("rekey", "rekey --config FILE (--new-key-file PATH | --decrypt) [--old-key-file PATH]")
	cfgPath := fs.String("config", config.DefaultFile, "configuration file")
	newKeyFile := fs.String("new-key-file", "", "file holding the new 32-byte key (raw, hex or base64)")
	oldKeyFile := fs.String("old-key-file", "", "file holding the current key (default: from the configuration)")
	decrypt := fs.Bool("decrypt", false, "store secrets unsealed from now on")
	if code, ok := c.parseFlags(fs, args); !ok {
		return code
	}
	if (*newKeyFile == "") == !*decrypt {
		return c.usageErr(fs, "rekey: give exactly one of --new-key-file and --decrypt")
	}

	cfg, ok := c.loadConfig(*cfgPath)
	if !ok {
		return exitError
	}
	oldKey := cfg.Store.Key
	var err error
	if *oldKeyFile != "" {
		if oldKey, err = readKey(*oldKeyFile); err != nil {
			c.printErr(err)
			return exitError
		}
	}
	var newKey []byte
	if *newKeyFile != "" {
		if newKey, err = readKey(*newKeyFile); err != nil {
			c.printErr(err)
			return exitError
		}
		if bytes.Equal(newKey, oldKey) {
			c.printErr(errors.New("tokend: rekey: the new key is the current key"))
			return exitError
		}
	} else if len(oldKey) == 0 {
		c.printErr(errors.New("tokend: rekey: no current key is configured: the store is unsealed already (or give --old-key-file)"))
		return exitError
	}

	if cfg.Store.Backend == config.BackendEtcd {
		// The store the configuration uses: never the bbolt file at
		// store.path, which the fleet does not read.
		err := rekeyEtcd(ctx, c.stdout, *cfgPath, *newKeyFile, cfg.Store, oldKey, newKey)
		switch {
		case errors.Is(err, store.ErrKeyRequired):
			c.printErr(fmt.Errorf("tokend: rekey: the etcd store is sealed and no current key was found: give it with --old-key-file"))
			return exitError
		case errors.Is(err, store.ErrWrongKey):
			c.printErr(fmt.Errorf("tokend: rekey: the current key does not open the etcd store: give the right one with --old-key-file: %w", err))
			return exitError
		case err != nil:
			c.printErr(fmt.Errorf("tokend: rekey: %w", err))
			return exitError
		}
		return exitOK
	}
	if _, err := os.Stat(cfg.Store.Path); errors.Is(err, os.ErrNotExist) {
		// Open would create an empty store and "rekey" it.
		c.printErr(fmt.Errorf("tokend: rekey: there is no store file at %s (store.path): nothing to rekey", cfg.Store.Path))
		return exitError
	}
	s, err := store.Open(store.Options{Path: cfg.Store.Path, Key: oldKey, LockTimeout: c.lockTimeout})
	switch {
	case errors.Is(err, store.ErrLocked):
		c.printErr(fmt.Errorf("tokend: rekey: %s is in use, probably by the running daemon: stop it first (systemctl stop tokend)", cfg.Store.Path))
		return exitError
	case errors.Is(err, store.ErrKeyRequired):
		c.printErr(fmt.Errorf("tokend: rekey: %s is sealed and no current key was found: give it with --old-key-file", cfg.Store.Path))
		return exitError
	case errors.Is(err, store.ErrWrongKey):
		c.printErr(fmt.Errorf("tokend: rekey: the current key does not open %s: give the right one with --old-key-file", cfg.Store.Path))
		return exitError
	case err != nil:
		c.printErr(fmt.Errorf("tokend: rekey: %w", err))
		return exitError
	}
	rerr := s.Rekey(newKey)
	cerr := s.Close()
	if err := errors.Join(rerr, cerr); err != nil {
		c.printErr(fmt.Errorf("tokend: rekey: %w", err))
		return exitError
	}
	if newKey != nil {
		fmt.Fprintf(c.stdout, "Re-sealed the secrets in %s with the key in %s.\n", cfg.Store.Path, *newKeyFile)
		fmt.Fprintf(c.stdout, "Before starting tokend, set in %s:\n\n    store:\n      key_file: %s\n\n", *cfgPath, *newKeyFile)
		fmt.Fprintln(c.stdout, "(or replace the tokend.key credential with that key and leave key_file unset).")
		return exitOK
	}
	fmt.Fprintf(c.stdout, "The secrets in %s are now stored unsealed.\n", cfg.Store.Path)
	fmt.Fprintf(c.stdout, "Before starting tokend, remove store.key_file from %s and the tokend.key credential,\n", *cfgPath)
	fmt.Fprintln(c.stdout, "or tokend will refuse to start with a key the store does not use.")
	return exitOK
}

// readKey reads and parses a key file; messages never show its contents.
func readKey(path string) ([]byte, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	key, err := config.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("tokend: %s: %w", path, err)
	}
	return key, nil
}

// readFile reads a regular file with a message fit for the terminal.
func readFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err == nil && fi.IsDir() {
		return nil, fmt.Errorf("tokend: %s %w", path, errNotConfig)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokend: %w", err)
	}
	return data, nil
}
