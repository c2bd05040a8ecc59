package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tokend/tokend/daemon"
)

// cmdCheckConfig loads a configuration file as the daemon would, prints
// its warnings and every problem found, or a summary of what it
// configures. --skip-secrets checks everything but the secret files and
// credentials (for a machine that does not have them, such as CI).
func (c *cli) cmdCheckConfig(_ context.Context, args []string) int {
	fs := c.flagSet("check-config", "check-config [FILE] [--skip-secrets]")
	cfgPath := fs.String("config", "", "configuration file (or give it as FILE; default "+daemon.DefaultConfigFile+")")
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
		path = daemon.DefaultConfigFile
	}

	var (
		cfg   *daemon.Config
		warns []string
		err   error
	)
	if *skipSecrets {
		var data []byte
		data, err = readFile(path)
		if err == nil {
			cfg, warns, err = daemon.ParseConfig(data, path)
		}
	} else {
		cfg, warns, err = daemon.LoadConfig(path)
	}
	for _, w := range warns {
		fmt.Fprintln(c.stderr, "warning: "+w)
	}
	if err != nil {
		// Each line names the file and line already.
		fmt.Fprintln(c.stderr, err)
		n := len(strings.Split(err.Error(), "\n"))
		if n > 1 {
			fmt.Fprintf(c.stderr, "tokend: %d problems in %s\n", n, path)
		}
		return exitError
	}
	cfg.Explain(c.stdout)
	fmt.Fprintf(c.stdout, "\n%s: OK\n", path)
	return exitOK
}

// errNotConfig is returned for a path that is a directory.
var errNotConfig = errors.New("is a directory, not a file")
