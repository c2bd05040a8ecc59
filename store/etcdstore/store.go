package etcdstore

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokend/tokend/store"
)

// Defaults of Options.
const (
	DefaultPrefix         = "/tokend/"
	DefaultDialTimeout    = 5 * time.Second
	DefaultLeaseTTL       = 10 * time.Second
	DefaultRequestTimeout = 3 * time.Second
)

// schemaVersion is the layout of the keys and the record format described
// in the package doc: every record sealed whole (store.RecordSchema).
// Schema 1 sealed secret fields alone; Open migrates it (migrate.go).
const schemaVersion = store.RecordSchema

// formatMagic marks a prefix as a tokend store, as the bbolt file's meta
// bucket does.
const formatMagic = "tokend-store"

// Options configure Open.
type Options struct {
	Endpoints []string
	// Prefix is where the store's keys live (default /tokend/); a "/" is
	// added when missing.
	Prefix   string
	Username string
	Password string
	TLS      *tls.Config // nil: plain connections
	// DialTimeout bounds the first connection (default 5 s).
	DialTimeout time.Duration
	// RequestTimeout bounds every request (default 3 s, at most
	// DialTimeout): without a quorum a call fails after it, never hangs.
	RequestTimeout time.Duration
	// LeaseTTL is the life of this instance's lease (default 10 s; etcd
	// rounds up to whole seconds and to its own minimum).
	LeaseTTL time.Duration
	// Key is the 32-byte sealing key (nil: secrets unsealed). Every
	// instance needs the same; etcd never sees a plaintext secret.
	Key []byte
	// Instance names this instance in the fleet (required; the daemon
	// defaults it to the hostname).
	Instance string
	Logger   *slog.Logger
	// Clock stamps keepalive answers and is what Holds measures the lease
	// left by (default time.Now).
	Clock func() time.Time
	// Slack is how many grants beyond its fair share an instance may take
	// (default 1): see the package doc.
	Slack int
}

// Store is the etcd store of fleet mode. It implements the daemon's Store
// and Fleet interfaces. Safe for concurrent use.
type Store struct {
	cli      *clientv3.Client
	pfx      string
	codec    *store.Codec
	inst     string
	log      *slog.Logger
	clock    func() time.Time
	reqTO    time.Duration
	ttl      time.Duration // asked for
	slack    int
	ctx      context.Context // ends with Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closed   atomic.Bool
	writeMu  [256]sync.Mutex // by grant hash: this instance's writes of one grant in turn
	campMu   sync.Mutex      // one campaign at a time
	campaign chan struct{}   // a campaign is wanted
	renewNow chan struct{}   // a renewal is wanted at once (noteErr)

	quorum atomic.Bool
	// renewed: the last renewal of the lease landed (through a member
	// with a leader); Holds is false while it is not.
	renewed atomic.Bool
	paused  atomic.Bool // tests: keepalives stopped (a paused process)
	watchOK atomic.Bool
	// watchDown: when (by Clock, UnixNano) the watch of tokens/ broke; 0
	// while it runs or before it first ran (see Health).
	watchDown atomic.Int64
	lagNs     atomic.Int64
	// badRecords counts token records that did not decode (loaded or
	// delivered): skipped, reported, and written over by their owner.
	badRecords atomic.Int64

	mu        sync.Mutex
	lease     clientv3.LeaseID // 0: none
	leaseTTL  time.Duration    // granted
	leaseExp  time.Time        // by Clock: when the lease ends at the latest, from the last keepalive
	seen      map[string]int64 // grant -> mod revision of tokens/<grant> last seen (written, read or watched)
	hist      map[string]histCache
	grants    map[string]string // this instance's grants -> fingerprint
	defs      map[string]def    // the fleet's definitions
	owners    map[string]owner  // grant -> holder, from the watch of owners/
	busyUntil map[string]time.Time
	releasing map[string]bool // grants a campaign is handing over: Holds refuses them
	loadRev   int64           // revision of the last EachToken
	following bool            // the watch of defs/ runs

	// orphanSince: grant -> when this instance's campaign first found it
	// ownerless (and not in conflict); keepExcessUntil: until when grants
	// taken beyond the share as orphans are kept (see takeOrphans).
	orphanSince     map[string]time.Time
	keepExcessUntil time.Time
}

type histCache struct {
	rev int64 // mod revision of history/<grant>; 0: none
	v   []json.RawMessage
}

type owner struct {
	inst  string
	lease clientv3.LeaseID
}

// def is a grant's fleet definition (defs/<grant>, store.Codec's def
// record).
type def struct {
	FP  string
	By  string
	rev int64
	bad bool // the record does not decode: no definition, written over
}

type metaRecord struct {
	Format  string    `json:"format"`
	Schema  int       `json:"schema"`
	Created time.Time `json:"created"`
	Check   string    `json:"check,omitempty"`
}

// Open connects to etcd, checks or creates the store's meta record under
// the prefix (refusing another product's keys, a newer schema, a wrong or
// missing key), takes this instance's lease and starts following the
// fleet. It fails with an error matching store.ErrUnavailable when etcd
// does not answer with a quorum within DialTimeout.
func Open(ctx context.Context, o Options) (*Store, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("store: etcd: no endpoints given")
	}
	if o.Instance == "" {
		return nil, errors.New("store: etcd: no instance name given")
	}
	if strings.ContainsAny(o.Instance, "/\x00\n") {
		return nil, fmt.Errorf("store: etcd: instance name %q may not contain /, newline or NUL", o.Instance)
	}
	codec, err := store.NewCodec(o.Key)
	if err != nil {
		return nil, err
	}
	pfx := o.connectionDefaults()
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Slack <= 0 {
		o.Slack = 1
	}
	cli, err := newClient(ctx, o)
	if err != nil {
		return nil, unavailable("connect", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Store{
		cli: cli, pfx: pfx, codec: codec, inst: o.Instance, log: o.Logger, clock: o.Clock,
		reqTO: o.RequestTimeout, ttl: o.LeaseTTL, slack: o.Slack, ctx: sctx, cancel: cancel,
		campaign:  make(chan struct{}, 1),
		renewNow:  make(chan struct{}, 1),
		seen:      map[string]int64{},
		hist:      map[string]histCache{},
		grants:    map[string]string{},
		defs:      map[string]def{},
		owners:    map[string]owner{},
		busyUntil: map[string]time.Time{},
		releasing: map[string]bool{},
	}
	octx, ocancel := context.WithTimeout(ctx, o.DialTimeout)
	defer ocancel()
	if err := s.checkMeta(octx); err != nil {
		cancel()
		cli.Close()
		return nil, err
	}
	if err := s.newLease(octx); err != nil {
		cancel()
		cli.Close()
		return nil, err
	}
	ownersRev, err := s.loadOwners(octx)
	if err != nil {
		cancel()
		cli.Close()
		return nil, err
	}
	s.quorum.Store(true)
	s.renewed.Store(true)
	s.wg.Add(3)
	go s.keepAlive()
	go func() {
		defer s.wg.Done()
		s.follow(s.ctx, s.key("owners/"), ownersRev, s.applyOwner, s.loadOwners, nil)
	}()
	go s.campaigner()
	return s, nil
}

// connectionDefaults gives what o leaves unset of the connection its
// default (the timeouts, a logger that discards; a request never waits
// longer than a dial) and returns the prefix o names, DefaultPrefix when
// none, ending in "/".
func (o *Options) connectionDefaults() string {
	pfx := o.Prefix
	if pfx == "" {
		pfx = DefaultPrefix
	}
	if !strings.HasSuffix(pfx, "/") {
		pfx += "/"
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	o.RequestTimeout = min(o.RequestTimeout, o.DialTimeout)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return pfx
}

func (s *Store) key(k string) string { return s.pfx + k }

// checkMeta creates the meta record of an empty prefix or checks the one
// there.
func (s *Store) checkMeta(ctx context.Context) error {
	mk := s.key("meta")
	v, _ := json.Marshal(metaRecord{Format: formatMagic, Schema: schemaVersion, Created: s.clock().UTC(), Check: s.codec.Check()})
	// A prefix with keys but no meta record is someone else's.
	others, err := s.cli.Get(ctx, s.pfx, clientv3.WithPrefix(), clientv3.WithLimit(1), clientv3.WithKeysOnly())
	if err != nil {
		return unavailable("read the store's meta record", err)
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(mk), "=", 0)).
		Then(clientv3.OpPut(mk, string(v))).
		Else(clientv3.OpGet(mk)).Commit()
	if err != nil {
		return unavailable("read the store's meta record", err)
	}
	where := fmt.Sprintf("etcd prefix %s", s.pfx)
	if resp.Succeeded {
		if len(others.Kvs) > 0 {
			// Undo: the keys there were not ours.
			_, _ = s.cli.Delete(ctx, mk)
			return store.NewError(store.ErrCorrupt, nil, fmt.Sprintf("store: %s holds keys that are not a tokend store's; choose another prefix", where))
		}
		s.log.Info("store: created the tokend store in etcd", "prefix", s.pfx, "encrypted", s.codec.Sealed())
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return store.NewError(store.ErrCorrupt, nil, fmt.Sprintf("store: %s: meta record vanished while opening", where))
	}
	var m metaRecord
	if err := json.Unmarshal(kvs[0].Value, &m); err != nil || m.Format != formatMagic {
		return store.NewError(store.ErrCorrupt, nil, fmt.Sprintf("store: %s is not a tokend store (its meta record is someone else's)", where))
	}
	if m.Schema > schemaVersion {
		return store.NewError(store.ErrNewerSchema, nil, fmt.Sprintf("store: %s has schema %d, newer than this tokend's %d", where, m.Schema, schemaVersion))
	}
	// The check binds the schema (from store.RecordSchema on): a meta
	// record set back to an older schema fails here.
	if err := s.codec.VerifyCheckAt(m.Check, m.Schema, where); err != nil {
		return err
	}
	if m.Schema < schemaVersion {
		// This build never rewrites a meta record of an older schema,
		// so one that was rewritten was set back by someone else.
		if kvs[0].ModRevision != kvs[0].CreateRevision {
			return store.NewError(store.ErrCorrupt, nil, fmt.Sprintf("store: %s: its meta record claims schema %d but was rewritten after it was created (set back by someone without the key?): not migrating", where, m.Schema))
		}
		return s.migrate(s.ctx, kvs[0], m)
	}
	return nil
}

// Instance is this instance's name.
func (s *Store) Instance() string { return s.inst }

// Close revokes this instance's lease, so others take its grants over at
// once, and disconnects.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	s.mu.Lock()
	lease := s.lease
	s.lease = 0
	s.mu.Unlock()
	if lease != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), s.reqTO)
		_, _ = s.cli.Revoke(ctx, lease)
		cancel()
	}
	return s.cli.Close()
}

// req is the context of one request: bounded, and ended by Close.
func (s *Store) req() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.reqTO)
}

// check refuses a call after Close.
func (s *Store) check() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// unavailable wraps an etcd error. A timeout or an unreachable cluster
// matches store.ErrUnavailable; etcd's errors carry keys (grant names),
// never values.
func unavailable(op string, err error) error {
	if isUnavailable(err) {
		return store.NewError(store.ErrUnavailable, err, "store: etcd: "+op+": no answer from an etcd quorum")
	}
	return fmt.Errorf("store: etcd: %s: %w", op, err)
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrNoLeader) ||
		errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) {
		return true
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable, codes.DeadlineExceeded:
			return true
		}
	}
	return false
}

// noteErr is told of a request that failed. One that got no answer from
// a quorum (after its tries on other members) casts doubt: nothing is
// refreshed (Holds) until the lease is renewed again, which is tried at
// once. Whether the cluster has lost its quorum is the renewals' finding
// alone (keepAlive): a request's failure may be a single member's.
func (s *Store) noteErr(err error) {
	if err != nil && isUnavailable(err) && !s.closed.Load() {
		s.renewed.Store(false)
		select {
		case s.renewNow <- struct{}{}:
		default:
		}
	}
}
