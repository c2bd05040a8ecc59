package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/tokend/tokend/config"
	"github.com/tokend/tokend/store"
)

// copyStore is one side of `tokend store copy`: a whole store, enumerated
// and written record by record. *store.Store (the bbolt file) is one; the
// etcd store is reached through openEtcdCopy.
type copyStore interface {
	EachToken(fn func(t *store.Token) error) error
	EachHistory(fn func(grant string, as []store.Attempt) error) error
	EachClient(fn func(c *store.Client) error) error
	EachProvider(fn func(name string, meta []byte) error) error
	Count() (store.Counts, error)
	// ImportGrant writes a grant's token (t may be nil) and replaces its
	// history, unfenced: the copy is the only writer.
	ImportGrant(grant string, t *store.Token, as []store.Attempt) error
	PutClient(c store.Client) error
	PutProvider(name string, meta []byte) error
	Close() error
}

var _ copyStore = (*store.Store)(nil)

// openEtcdCopy opens the etcd store of the configuration's store.etcd
// section for a copy; describe names it for the output (endpoints and
// prefix, no credentials). It is set by storecopy_etcd.go.
var openEtcdCopy func(ctx context.Context, cfg *config.Config) (s copyStore, describe string, err error)

const storeUsage = `usage: tokend store copy --from SPEC --to SPEC [--config FILE] [--force | --into-live-fleet]

SPEC is bbolt:PATH (a store file) or etcd (the store.etcd section of the
configuration). Secrets are sealed with the configuration's store key on
both sides. Stop the daemon (every instance, for etcd) first: a copy into
etcd is refused while instances of a fleet are live there.

--force copies into a store that holds records already, overwriting them
with the copy's: a token refreshed since the copy's source was written is
rolled back, and a rotated refresh token rolled back is one the provider
has revoked (its chain may be revoked with it).

--into-live-fleet imports into the etcd store of a running fleet instead:
a grant's token is written only where the fleet's record is older (a
lower generation), fenced on the revision read, histories are left alone
and clients are added only where absent.
`

// cmdStore runs `tokend store SUBCOMMAND`.
func (c *cli) cmdStore(ctx context.Context, args []string) int {
	if len(args) == 0 || args[0] != "copy" {
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			fmt.Fprint(c.stdout, storeUsage)
			return exitOK
		}
		fmt.Fprint(c.stderr, storeUsage)
		return exitUsage
	}
	return c.cmdStoreCopy(ctx, args[1:])
}

// cmdStoreCopy copies every grant's token and history, every client and
// every cached provider document from one store to another: from the
// bbolt file of one host to etcd (going to fleet mode) and back. Pending
// authorizations are not copied: they live minutes, and one started
// before the move is simply started again. The destination must be empty
// unless --force, which overwrites the records copied and leaves others.
func (c *cli) cmdStoreCopy(ctx context.Context, args []string) int {
	fs := c.flagSet("store copy", "store copy --from bbolt:PATH|etcd --to etcd|bbolt:PATH [--config FILE] [--force]")
	cfgPath := fs.String("config", config.DefaultFile, "configuration file: the store key and the store.etcd section")
	from := fs.String("from", "", "source: bbolt:PATH or etcd")
	to := fs.String("to", "", "destination: bbolt:PATH or etcd")
	force := fs.Bool("force", false, "copy into a destination that holds records already: they are overwritten, refresh tokens rolled back")
	intoLive := fs.Bool("into-live-fleet", false, "import into the etcd store of a running fleet: only grants whose record there is older, fenced")
	if code, ok := c.parseFlags(fs, args); !ok {
		return code
	}
	src, err := parseStoreSpec(*from)
	if err != nil {
		return c.usageErr(fs, "store copy: --from: %v", err)
	}
	dst, err := parseStoreSpec(*to)
	if err != nil {
		return c.usageErr(fs, "store copy: --to: %v", err)
	}
	if src == dst {
		return c.usageErr(fs, "store copy: --from and --to are the same store")
	}
	if *intoLive && (!dst.etcd || *force) {
		return c.usageErr(fs, "store copy: --into-live-fleet goes with --to etcd and without --force")
	}

	cfg, ok := c.loadConfig(*cfgPath)
	if !ok {
		return exitError
	}
	if err := c.storeCopy(ctx, cfg, src, dst, *force, *intoLive); err != nil {
		c.printErr(fmt.Errorf("tokend: store copy: %w", err))
		return exitError
	}
	return exitOK
}

// storeSpec is a parsed --from or --to: etcd, or the path of a bbolt file.
type storeSpec struct {
	etcd bool
	path string
}

func (s storeSpec) String() string {
	if s.etcd {
		return "etcd"
	}
	return "bbolt:" + s.path
}

func parseStoreSpec(v string) (storeSpec, error) {
	switch {
	case v == "":
		return storeSpec{}, errors.New("missing: give bbolt:PATH or etcd")
	case v == "etcd":
		return storeSpec{etcd: true}, nil
	case strings.HasPrefix(v, "bbolt:"):
		p := strings.TrimPrefix(v, "bbolt:")
		if p == "" {
			return storeSpec{}, errors.New("bbolt: needs a file path (bbolt:/var/lib/tokend/tokend.db)")
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return storeSpec{}, err
		}
		return storeSpec{path: abs}, nil
	}
	return storeSpec{}, fmt.Errorf("%q: want bbolt:PATH or etcd", v)
}

// openSpec opens one side. A source bbolt file must exist (Open would create
// it); a destination one is created.
func (c *cli) openSpec(ctx context.Context, cfg *config.Config, s storeSpec, source bool) (copyStore, string, error) {
	if s.etcd {
		if len(cfg.Store.Etcd.Endpoints) == 0 {
			return nil, "", errors.New("etcd: the configuration has no store.etcd.endpoints")
		}
		if openEtcdCopy == nil {
			return nil, "", errors.New("this tokend was built without the etcd store")
		}
		return openEtcdCopy(ctx, cfg)
	}
	if source {
		if _, err := os.Stat(s.path); err != nil {
			return nil, "", err
		}
	}
	st, err := store.Open(store.Options{Path: s.path, Key: cfg.Store.Key, LockTimeout: c.lockTimeout})
	switch {
	case errors.Is(err, store.ErrLocked):
		return nil, "", fmt.Errorf("%s is in use, probably by the running daemon: stop it first", s.path)
	case errors.Is(err, store.ErrKeyRequired), errors.Is(err, store.ErrWrongKey):
		return nil, "", fmt.Errorf("%w (the store key comes from the configuration's store.key_file or the tokend.key credential)", err)
	case err != nil:
		return nil, "", err
	}
	return st, s.String(), nil
}

// liveStore is the etcd store as the destination of a copy into a
// running fleet.
type liveStore interface {
	LiveFleet() ([]string, error)
	ImportGrantLive(t store.Token) (bool, error)
	PutClientIfAbsent(c store.Client) (bool, error)
}

func (c *cli) storeCopy(ctx context.Context, cfg *config.Config, from, to storeSpec, force, intoLive bool) (err error) {
	src, srcName, err := c.openSpec(ctx, cfg, from, true)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, src.Close()) }()
	dst, dstName, err := c.openSpec(ctx, cfg, to, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, dst.Close()) }()

	if ls, ok := dst.(liveStore); ok {
		live, err := ls.LiveFleet()
		if err != nil {
			return fmt.Errorf("%s: %w", dstName, err)
		}
		if intoLive {
			return c.copyLive(src, srcName, ls, dstName)
		}
		if len(live) > 0 {
			return fmt.Errorf("%s is in use by a running fleet (instances %s): writing over its records unfenced would roll refreshed tokens back; stop every instance first, or give --into-live-fleet to import only the grants whose record there is older", dstName, strings.Join(live, ", "))
		}
	}
	have, err := dst.Count()
	if err != nil {
		return fmt.Errorf("%s: %w", dstName, err)
	}
	if have != (store.Counts{}) && !force {
		return fmt.Errorf("%s is not empty (%s): give --force to overwrite the records copied", dstName, describeCounts(have))
	}
	want, err := src.Count()
	if err != nil {
		return fmt.Errorf("%s: %w", srcName, err)
	}
	done, err := copyRecords(src, c.withProgress(dst, want))
	if err != nil {
		return fmt.Errorf("%s to %s, after %s: %w", srcName, dstName, describeCounts(done), err)
	}
	// What was read is what was written: the stores were not written to
	// during the copy (the daemon is stopped), so a difference is a bug.
	if done.Tokens != want.Tokens || done.Clients != want.Clients || done.Providers != want.Providers || done.Histories != want.Histories {
		return fmt.Errorf("%s counted %s but %s were copied: was a daemon running?", srcName, describeCounts(want), describeCounts(done))
	}
	printCopy(c.stdout, srcName, dstName, done, want.Pending)
	return nil
}

// copyLive imports src into the etcd store of a running fleet: clients
// where absent, tokens where the fleet's record is older (fenced on the
// revision read). Histories and provider caches are the fleet's own.
func (c *cli) copyLive(src copyStore, srcName string, dst liveStore, dstName string) error {
	var clients, clientsKept, tokens, kept int
	err := src.EachClient(func(cl *store.Client) error {
		ok, err := dst.PutClientIfAbsent(*cl)
		if ok {
			clients++
		} else if err == nil {
			clientsKept++
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s to %s: clients: %w", srcName, dstName, err)
	}
	var toks []*store.Token
	if err := src.EachToken(func(t *store.Token) error { toks = append(toks, t); return nil }); err != nil {
		return fmt.Errorf("%s: tokens: %w", srcName, err)
	}
	for _, t := range toks {
		ok, err := dst.ImportGrantLive(*t)
		if err != nil {
			return fmt.Errorf("%s to %s: grant %q: %w", srcName, dstName, t.Grant, err)
		}
		if ok {
			tokens++
		} else {
			kept++
		}
	}
	fmt.Fprintf(c.stdout, "Imported %s into the running fleet's %s:\n", srcName, dstName)
	fmt.Fprintf(c.stdout, "  tokens     %d imported, %d kept (the fleet's record is as new or newer)\n", tokens, kept)
	fmt.Fprintf(c.stdout, "  clients    %d added, %d kept (already there)\n", clients, clientsKept)
	return nil
}

// copyRecords copies clients, providers, then grants with their history.
// Every secret goes through memory only: opened with the key of the
// source, sealed again by the destination.
func copyRecords(src, dst copyStore) (store.Counts, error) {
	var n store.Counts
	err := src.EachClient(func(cl *store.Client) error {
		n.Clients++
		return dst.PutClient(*cl)
	})
	if err != nil {
		return n, fmt.Errorf("clients: %w", err)
	}
	err = src.EachProvider(func(name string, meta []byte) error {
		n.Providers++
		return dst.PutProvider(name, meta)
	})
	if err != nil {
		return n, fmt.Errorf("providers: %w", err)
	}
	// Histories first, by grant, so each grant goes in with one write.
	hist := map[string][]store.Attempt{}
	err = src.EachHistory(func(g string, as []store.Attempt) error {
		hist[g] = as
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("histories: %w", err)
	}
	// EachToken forbids calling the store from fn; writing the other
	// store is allowed, but gathering first keeps both sides simple.
	var toks []*store.Token
	if err := src.EachToken(func(t *store.Token) error { toks = append(toks, t); return nil }); err != nil {
		return n, fmt.Errorf("tokens: %w", err)
	}
	for _, t := range toks {
		as := hist[t.Grant]
		delete(hist, t.Grant)
		if err := dst.ImportGrant(t.Grant, t, as); err != nil {
			return n, fmt.Errorf("grant %q: %w", t.Grant, err)
		}
		n.Tokens++
		if len(as) > 0 {
			n.Histories++
			n.Attempts += len(as)
		}
	}
	for g, as := range hist { // histories of grants without a token
		if err := dst.ImportGrant(g, nil, as); err != nil {
			return n, fmt.Errorf("history of grant %q: %w", g, err)
		}
		n.Histories++
		n.Attempts += len(as)
	}
	return n, nil
}

func describeCounts(n store.Counts) string {
	return fmt.Sprintf("%d tokens, %d histories, %d clients, %d providers, %d pending authorizations",
		n.Tokens, n.Histories, n.Clients, n.Providers, n.Pending)
}

func printCopy(w io.Writer, from, to string, n store.Counts, pending int) {
	fmt.Fprintf(w, "Copied %s to %s:\n", from, to)
	fmt.Fprintf(w, "  tokens     %d\n", n.Tokens)
	fmt.Fprintf(w, "  histories  %d (%d attempts)\n", n.Histories, n.Attempts)
	fmt.Fprintf(w, "  clients    %d\n", n.Clients)
	fmt.Fprintf(w, "  providers  %d\n", n.Providers)
	if pending > 0 {
		fmt.Fprintf(w, "Not copied: %d pending authorizations (start them again with tokend authorize).\n", pending)
	}
}
