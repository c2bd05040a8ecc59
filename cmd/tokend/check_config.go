package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store"
)

// installedExamples is where the Debian package puts the example
// configurations (packaging/nfpm.yaml).
const installedExamples = "/usr/share/doc/tokend/examples/"

// cmdCheckConfig loads a configuration file as the daemon would, prints
// its warnings and every problem found, or a summary of what it
// configures. --skip-secrets checks everything but the secret files and
// credentials (for a machine that does not have them, such as CI).
func (c *cli) cmdCheckConfig(_ context.Context, args []string) int {
	fs := c.flagSet("check-config", "check-config [FILE] [--skip-secrets]")
	cfgPath := fs.String("config", "", "configuration file (or give it as FILE; default "+config.DefaultFile+")")
	skipSecrets := fs.Bool("skip-secrets", false, "do not read secret files, credentials or the store key")
	pos, code, ok := c.parseArgs(fs, args)
	if !ok {
		return code
	}
	path := *cfgPath
	switch {
	case len(pos) > 1:
		return c.usageErr(fs, "check-config: unexpected argument %q", pos[1])
	case len(pos) == 1 && path != "":
		return c.usageErr(fs, "check-config: give FILE or --config, not both")
	case len(pos) == 1:
		path = pos[0]
	case path == "":
		path = config.DefaultFile
	}

	var (
		cfg   *config.Config
		warns []string
		err   error
	)
	if *skipSecrets {
		var data []byte
		data, err = readFile(path)
		if err == nil {
			cfg, warns, err = config.Parse(data, path)
		}
	} else {
		cfg, warns, err = config.Load(path)
	}
	for _, w := range warns {
		fmt.Fprintln(c.stderr, "warning: "+w)
	}
	if err != nil {
		// Each line names the file and line already.
		fmt.Fprintln(c.stderr, err)
		if _, serr := os.Stat(path); errors.Is(serr, os.ErrNotExist) {
			fmt.Fprintf(c.stderr, "tokend: no configuration yet: copy an example from %s (examples/ in the source) to %s\n", installedExamples, path)
		}
		n := len(strings.Split(err.Error(), "\n"))
		if n > 1 {
			fmt.Fprintf(c.stderr, "tokend: %d problems in %s\n", n, path)
		}
		return exitError
	}
	// The key the shipped unit passes as the credential tokend.key: serve
	// sees only systemd's private copy, so the file itself is checked here.
	if !*skipSecrets && cfg.Store.KeyFile == "" && os.Getenv("CREDENTIALS_DIRECTORY") == "" {
		if _, serr := os.Stat(unitStoreKey); serr == nil {
			warn, kerr := cfg.CheckSecretFile(unitStoreKey)
			if kerr != nil {
				fmt.Fprintln(c.stderr, kerr)
				fmt.Fprintf(c.stderr, "tokend: the store key %s (LoadCredential= of tokend.service) is not safe to use\n", unitStoreKey)
				return exitError
			}
			if warn != "" {
				fmt.Fprintln(c.stderr, "warning: store key (credential "+config.StoreKeyCredential+"): "+warn)
			}
		}
	}
	// The store is checked as Open will check it: a file or directory
	// another user controls is a problem, not an OK.
	var note string
	if !cfg.Store.FleetMode() { // in fleet mode store.path is not used
		note, err = checkStore(cfg.Store.Path)
	}
	if err != nil {
		fmt.Fprintln(c.stderr, err) // it names the file and what to do
		fmt.Fprintf(c.stderr, "tokend: the store (store.path) of %s is not safe to use\n", path)
		return exitError
	}
	sinkNotes, sinkWarnings, sinkProblems := checkSinks(cfg)
	for _, w := range sinkWarnings {
		fmt.Fprintln(c.stderr, "warning: "+w)
	}
	if len(sinkProblems) > 0 {
		for _, p := range sinkProblems {
			fmt.Fprintln(c.stderr, path+": "+p)
		}
		fmt.Fprintf(c.stderr, "tokend: %d sink(s) of %s would not be written\n", len(sinkProblems), path)
		return exitError
	}
	cfg.Explain(c.stdout)
	if note != "" {
		fmt.Fprintln(c.stdout, "\n"+note)
	}
	for _, n := range sinkNotes {
		fmt.Fprintln(c.stdout, "\n"+n)
	}
	fmt.Fprintf(c.stdout, "\n%s: OK\n", path)
	return exitOK
}

// unitStoreKey is the file tokend.service passes as the credential
// tokend.key (LoadCredential=); a variable for tests.
var unitStoreKey = "/etc/tokend/store.key"

// serviceUser is the account tokend.service runs as (User=, created by
// tokend.sysusers).
var serviceUser = "tokend"

// checkStore reports what `tokend serve` would refuse about the store file
// and its directory, run as check-config's own user. One exception: root
// checking a store whose directory or file belongs to the service user is
// looking at the usual layout (the unit runs tokend as that user, and
// StateDirectory= gives it the directory), not at another user's file; it
// is checked for the service user, and when it passes, a note says tokend
// must run as that user. A store of any other user is refused, as serve
// run as root refuses it.
func checkStore(path string) (note string, err error) {
	euid := os.Geteuid()
	err = store.CheckPath(path, euid)
	if errors.Is(err, os.ErrPermission) {
		// Not a problem of the store: this user may not look into its
		// directory (a 0700 state directory of tokend's user, say).
		return fmt.Sprintf("note: the store %s was not checked (%v): run check-config as root or as tokend's user to check it", path, err), nil
	}
	if err == nil || euid != 0 {
		return "", err
	}
	u, lerr := user.Lookup(serviceUser)
	if lerr != nil {
		return "", err
	}
	uid, perr := strconv.Atoi(u.Uid)
	if perr != nil || uid == 0 || (ownerOf(filepath.Dir(path), os.Stat) != uid && ownerOf(path, os.Lstat) != uid) {
		return "", err
	}
	if err := store.CheckPath(path, uid); err != nil {
		return "", err
	}
	return fmt.Sprintf("note: the store %s belongs to user %s (uid %d): tokend must run as that user, as tokend.service does; run as root or as anyone else it refuses the file", path, serviceUser, uid), nil
}

// ownerOf returns the uid owning path, or -1.
func ownerOf(path string, stat func(string) (os.FileInfo, error)) int {
	fi, err := stat(path)
	if err != nil {
		return -1
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// errNotConfig is returned for a path that is a directory.
var errNotConfig = errors.New("is a directory, not a file")
