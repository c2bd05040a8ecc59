// Package etcdtest runs etcd for tests: a cluster of one or three members
// inside the test process (go.etcd.io/etcd/server/v3/embed), on loopback
// ports the OS picks, data in the test's temporary directory, election
// settings fast enough that a lost leader is replaced in about a second,
// and logs kept in memory and printed only when the test fails. Members
// can be stopped and restarted (quorum loss, member loss), and, in a
// relayed cluster, cut off from their peers while their clients still
// reach them (PeerRelay: a member alive with no leader).
//
// It also exports what a small binary needs to run one member as a
// separate process (Plan, Member.Start, and the etcdmember command), for
// the end-to-end tests that kill and pause members as processes.
package etcdtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Timing of the test members: a heartbeat every 50 ms and an election
// after 500 ms without one. Faster settings make spurious elections on a
// loaded two-core machine running the race detector.
const (
	TickMs     = 50
	ElectionMs = 500
)

// Member is one etcd member's identity: its name, data directory and URLs.
// A member restarted with the same Member rejoins its cluster.
type Member struct {
	Name    string
	Dir     string
	PeerURL string // http://127.0.0.1:port, advertised to the peers
	// ListenPeerURL is where the member listens for its peers when a
	// PeerRelay stands on PeerURL (PlanRelayed); "": on PeerURL.
	ListenPeerURL  string
	ClientURL      string // http://127.0.0.1:port
	InitialCluster string // name=peerURL,... of every member
	ClusterToken   string
	// NoFsync skips fsync (faster tests; benchmarks of durable writes
	// leave it false).
	NoFsync bool
}

// Plan names n members with data under dir and picks free loopback ports
// for them. The ports are free when Plan returns; another process could
// take one before the member binds it, which Start reports (and New
// retries with new ports).
func Plan(n int, dir string) ([]Member, error) {
	if n < 1 {
		return nil, errors.New("etcdtest: a cluster needs a member")
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	ms := make([]Member, n)
	var cluster []string
	token := fmt.Sprintf("etcdtest-%d", ports[0])
	for i := range ms {
		ms[i] = Member{
			Name:         fmt.Sprintf("m%d", i),
			Dir:          filepath.Join(dir, fmt.Sprintf("m%d", i)),
			PeerURL:      fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			ClientURL:    fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			ClusterToken: token,
		}
		cluster = append(cluster, ms[i].Name+"="+ms[i].PeerURL)
	}
	for i := range ms {
		ms[i].InitialCluster = strings.Join(cluster, ",")
	}
	return ms, nil
}

// Args are the command-line arguments of the etcdmember command
// (internal/etcdtest/etcdmember) running m; logPath may be "".
func (m Member) Args(logPath string) []string {
	args := []string{"-name", m.Name, "-dir", m.Dir, "-peer", m.PeerURL, "-client", m.ClientURL,
		"-cluster", m.InitialCluster, "-token", m.ClusterToken}
	if m.ListenPeerURL != "" {
		args = append(args, "-listen-peer", m.ListenPeerURL)
	}
	if m.NoFsync {
		args = append(args, "-nofsync")
	}
	if logPath != "" {
		args = append(args, "-log", logPath)
	}
	return args
}

// freePorts asks the OS for n distinct free loopback ports, holding every
// listener until all are chosen so that no port is given twice.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("etcdtest: pick a port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Config is the embed configuration of m, logging to log (nil: nowhere).
func (m Member) Config(log io.Writer) (*embed.Config, error) {
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	peer, err := url.Parse(m.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: peer URL: %w", err)
	}
	client, err := url.Parse(m.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: client URL: %w", err)
	}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	if m.ListenPeerURL != "" {
		lp, err := url.Parse(m.ListenPeerURL)
		if err != nil {
			return nil, fmt.Errorf("etcdtest: listen peer URL: %w", err)
		}
		cfg.ListenPeerUrls = []url.URL{*lp}
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.InitialCluster = m.InitialCluster
	cfg.InitialClusterToken = m.ClusterToken
	cfg.ClusterState = embed.ClusterStateFlagNew
	cfg.TickMs, cfg.ElectionMs = TickMs, ElectionMs
	cfg.UnsafeNoFsync = m.NoFsync
	cfg.Metrics = "basic"
	if log == nil {
		log = io.Discard
	}
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	lg := zap.New(zapcore.NewCore(enc, zapcore.AddSync(log), zapcore.InfoLevel))
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	return cfg, nil
}

// Start starts the member and waits until it has joined its cluster (for
// the first start of a cluster, until enough members started for a
// leader) or timeout passed.
func (m Member) Start(log io.Writer, timeout time.Duration) (*embed.Etcd, error) {
	cfg, err := m.Config(log)
	if err != nil {
		return nil, err
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcdtest: start %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdtest: %s: %w", m.Name, err)
	case <-time.After(timeout):
		e.Close()
		return nil, fmt.Errorf("etcdtest: %s not ready after %s", m.Name, timeout)
	}
}

// Options configure New.
type Options struct {
	Members int  // 1 or 3 (default 3)
	NoFsync bool // see Member.NoFsync
	// Relayed puts a PeerRelay on the peer URLs, so that Isolate can cut
	// a member off from its peers while its clients still reach it.
	Relayed bool
}

// Cluster is an embedded etcd cluster.
type Cluster struct {
	tb      testing.TB
	members []Member
	log     *logBuffer
	relay   *PeerRelay // nil unless Options.Relayed

	mu   sync.Mutex
	etcd []*embed.Etcd // nil: stopped
}

// New starts a cluster for the test and stops it when the test ends. Its
// logs are printed (their tail) only if the test failed.
func New(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	n := o.Members
	if n == 0 {
		n = 3
	}
	log := &logBuffer{}
	var lastErr error
	for attempt := range 3 {
		plan := Plan
		if o.Relayed {
			plan = PlanRelayed
		}
		ms, err := plan(n, filepath.Join(tb.TempDir(), fmt.Sprint("etcd", attempt)))
		if err != nil {
			tb.Fatal(err)
		}
		for i := range ms {
			ms[i].NoFsync = o.NoFsync
		}
		c := &Cluster{tb: tb, members: ms, log: log, etcd: make([]*embed.Etcd, n)}
		if o.Relayed {
			if c.relay, lastErr = NewPeerRelay(ms); lastErr != nil {
				continue // a port was taken meanwhile
			}
		}
		if lastErr = c.startAll(); lastErr == nil {
			tb.Cleanup(func() {
				c.Close()
				if tb.Failed() {
					tb.Logf("etcd logs (tail):\n%s", log.tail(32<<10))
				}
			})
			return c
		}
		c.Close()
	}
	tb.Logf("etcd logs (tail):\n%s", log.tail(32<<10))
	tb.Fatalf("etcdtest: cluster did not start: %v", lastErr)
	return nil
}

// startAll starts every member at once: the first start of a cluster
// needs a quorum of them to elect a leader before any is ready.
func (c *Cluster) startAll() error {
	errs := make([]error, len(c.members))
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Go(func() {
			e, err := c.members[i].Start(c.log, 30*time.Second)
			c.mu.Lock()
			c.etcd[i] = e
			c.mu.Unlock()
			errs[i] = err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Endpoints are the client URLs of every member (stopped ones too).
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Members are the members' identities.
func (c *Cluster) Members() []Member { return append([]Member(nil), c.members...) }

// Stop stops member i (a clean stop; its data stays).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	e := c.etcd[i]
	c.etcd[i] = nil
	c.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

// Restart starts stopped member i again with its data; it rejoins the
// cluster. With the others stopped it waits for them: use RestartAsync.
func (c *Cluster) Restart(i int) {
	c.tb.Helper()
	if err := <-c.RestartAsync(i); err != nil {
		c.tb.Fatal(err)
	}
}

// RestartAsync starts stopped member i again and reports on the channel
// when it is ready (a member restarted without a quorum of its cluster
// up is ready only once enough others are back).
func (c *Cluster) RestartAsync(i int) <-chan error {
	ch := make(chan error, 1)
	go func() {
		e, err := c.members[i].Start(c.log, 30*time.Second)
		if err == nil {
			c.mu.Lock()
			c.etcd[i] = e
			c.mu.Unlock()
		}
		ch <- err
	}()
	return ch
}

// Isolate cuts member i off from its peers (Options.Relayed): it keeps
// running and answering clients, without a leader, until Heal.
func (c *Cluster) Isolate(i int) {
	c.tb.Helper()
	if c.relay == nil {
		c.tb.Fatal("etcdtest: Isolate needs Options.Relayed")
	}
	c.relay.Isolate(i)
}

// Heal reconnects member i to its peers.
func (c *Cluster) Heal(i int) {
	c.tb.Helper()
	if c.relay == nil {
		c.tb.Fatal("etcdtest: Heal needs Options.Relayed")
	}
	c.relay.Heal(i)
}

// Close stops every member.
func (c *Cluster) Close() {
	for i := range c.members {
		c.Stop(i)
	}
	if c.relay != nil {
		c.relay.Close()
	}
}

// logBuffer keeps the members' logs, bounded, for a failed test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

const maxLog = 1 << 20

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len()+len(p) > maxLog {
		keep := b.buf.Bytes()[b.buf.Len()/2:]
		nb := bytes.Clone(keep)
		b.buf.Reset()
		b.buf.Write(nb)
	}
	return b.buf.Write(p)
}

func (b *logBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	bs := b.buf.Bytes()
	return string(bs[max(0, len(bs)-n):])
}
