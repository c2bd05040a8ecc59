package etcdtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/types"
	"go.etcd.io/etcd/server/v3/etcdserver/api/membership"
)

// PlanRelayed is Plan for a cluster whose peer traffic goes through a
// PeerRelay: each member advertises PeerURL, where the relay listens, and
// listens itself on ListenPeerURL.
func PlanRelayed(n int, dir string) ([]Member, error) {
	ms, err := Plan(n, dir)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		ms[i].ListenPeerURL = fmt.Sprintf("http://127.0.0.1:%d", ports[i])
	}
	return ms, nil
}

// PeerRelay carries the peer traffic of a relayed cluster (PlanRelayed)
// and can cut one member off from its peers while its clients still reach
// it: Isolate closes every peer connection to or from the member and
// refuses new ones, so the member loses its leader (it answers clients,
// "no leader") while the others elect one among themselves. Each peer
// connection is told apart by the X-Server-From header of its first
// request (etcd's rafthttp names the sending member in every request).
// Safe for concurrent use.
type PeerRelay struct {
	ms  []Member
	ids map[string]int // member ID (hex) -> index
	lns []net.Listener

	mu       sync.Mutex
	isolated map[int]bool
	conns    map[*relayConn]bool
	closed   bool
	wg       sync.WaitGroup
}

type relayConn struct {
	from, to  int // member indexes; from -1: unknown
	a, b      net.Conn
	closeOnce sync.Once
}

func (c *relayConn) close() {
	c.closeOnce.Do(func() {
		c.a.Close()
		if c.b != nil {
			c.b.Close()
		}
	})
}

// MemberID is the raft ID of m in its cluster, as etcd computes it for the
// members of an initial cluster.
func (m Member) MemberID() string {
	urls, err := types.NewURLs([]string{m.PeerURL})
	if err != nil {
		return ""
	}
	return membership.NewMember(m.Name, urls, m.ClusterToken, nil).ID.String()
}

// NewPeerRelay listens on every member's PeerURL and forwards to its
// ListenPeerURL.
func NewPeerRelay(ms []Member) (*PeerRelay, error) {
	r := &PeerRelay{ms: ms, ids: map[string]int{}, isolated: map[int]bool{}, conns: map[*relayConn]bool{}}
	// ids is complete before the first relay goroutine reads it.
	for i, m := range ms {
		if m.ListenPeerURL == "" {
			return nil, fmt.Errorf("etcdtest: member %s has no ListenPeerURL (use PlanRelayed)", m.Name)
		}
		r.ids[m.MemberID()] = i
	}
	for i, m := range ms {
		u, err := url.Parse(m.PeerURL)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("etcdtest: peer URL: %w", err)
		}
		ln, err := net.Listen("tcp", u.Host)
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("etcdtest: relay for %s: %w", m.Name, err)
		}
		r.lns = append(r.lns, ln)
		target, _ := url.Parse(m.ListenPeerURL)
		r.wg.Add(1)
		go r.serve(ln, i, target.Host)
	}
	return r, nil
}

func (r *PeerRelay) serve(ln net.Listener, to int, target string) {
	defer r.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go r.relay(c, to, target)
	}
}

// maxHead bounds the request head the relay reads to learn the sender.
const maxHead = 16 << 10

func (r *PeerRelay) relay(a net.Conn, to int, target string) {
	rc := &relayConn{from: -1, to: to, a: a}
	br := bufio.NewReaderSize(a, maxHead)
	// The first request's head names the sender.
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	var head []byte
	for n := 1; n <= maxHead; n++ {
		b, err := br.Peek(n)
		if err != nil {
			break
		}
		if bytes.HasSuffix(b, []byte("\r\n\r\n")) {
			head = b
			break
		}
	}
	a.SetReadDeadline(time.Time{})
	if head != nil {
		if req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head))); err == nil {
			if i, ok := r.ids[strings.ToLower(req.Header.Get("X-Server-From"))]; ok {
				rc.from = i
			}
		}
	}
	r.mu.Lock()
	if r.closed || r.isolated[to] || (rc.from >= 0 && r.isolated[rc.from]) {
		r.mu.Unlock()
		a.Close()
		return
	}
	r.conns[rc] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, rc)
		r.mu.Unlock()
		rc.close()
	}()
	b, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	r.mu.Lock()
	rc.b = b
	cut := r.closed || !r.conns[rc]
	r.mu.Unlock()
	if cut {
		b.Close()
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, br); done <- struct{}{} }()
	go func() { io.Copy(a, b); done <- struct{}{} }()
	<-done
}

// Isolate cuts member i off from its peers until Heal.
func (r *PeerRelay) Isolate(i int) {
	r.mu.Lock()
	r.isolated[i] = true
	var cut []*relayConn
	for c := range r.conns {
		if c.to == i || c.from == i {
			cut = append(cut, c)
			delete(r.conns, c)
		}
	}
	r.mu.Unlock()
	for _, c := range cut {
		c.close()
	}
}

// Heal lets member i reach its peers again.
func (r *PeerRelay) Heal(i int) {
	r.mu.Lock()
	delete(r.isolated, i)
	r.mu.Unlock()
}

// Close stops relaying and closes every connection.
func (r *PeerRelay) Close() {
	r.mu.Lock()
	r.closed = true
	cs := r.conns
	r.conns = map[*relayConn]bool{}
	r.mu.Unlock()
	for _, ln := range r.lns {
		ln.Close()
	}
	for c := range cs {
		c.close()
	}
	r.wg.Wait()
}
