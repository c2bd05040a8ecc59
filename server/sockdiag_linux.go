package server

// Who is at the other end of a loopback TCP connection: the kernel keeps,
// for every socket, the uid of the user who created it, and hands it out
// through NETLINK_SOCK_DIAG (the interface ss(8) reads). A TCP connection
// carries no credentials of its own; this is the only record of the
// connecting user that the caller cannot choose.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Sizes and offsets of the kernel's structures (linux/inet_diag.h); x/sys
// has no types for them.
const (
	nlmsgHdrLen     = 16
	inetDiagReqLen  = 56 // struct inet_diag_req_v2
	inetDiagMsgLen  = 72 // struct inet_diag_msg
	inetDiagIDStart = 8  // inet_diag_req_v2.id
	inetDiagMsgID   = 4  // inet_diag_msg.id
	inetDiagMsgUID  = 64 // inet_diag_msg.idiag_uid
	inetDiagMsgIno  = 68 // inet_diag_msg.idiag_inode
	inetDiagNoCook  = 0xffffffff
	tcpAllStates    = 0xffffffff
)

var diagSeq atomic.Uint32

// errNoSocket: the kernel knows no socket with these addresses (the peer
// closed it already, or it lives in another network namespace).
var errNoSocket = errors.New("server: no such socket")

// loopbackPeerUID returns the uid that owns the TCP socket at the other end
// of a connection whose local address is local and whose remote address is
// remote, both loopback. The socket looked up is the peer's: its source is
// our remote and its destination our local address. A peer that connected
// from an IPv6 socket to an IPv4 address has IPv4-mapped addresses; both
// families are asked.
func loopbackPeerUID(local, remote netip.AddrPort) (uint32, error) {
	if !local.Addr().Unmap().IsLoopback() || !remote.Addr().Unmap().IsLoopback() {
		return 0, fmt.Errorf("server: %s -> %s is not a loopback connection", remote, local)
	}
	src, dst := remote, local
	if src.Addr().Is4In6() || src.Addr().Is4() {
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
		uid, err := sockDiagUID(unix.AF_INET, src, dst)
		if !errors.Is(err, errNoSocket) {
			return uid, err
		}
		// An IPv6 socket that connected to ::ffff:127.0.0.1.
		src = netip.AddrPortFrom(netip.AddrFrom16(src.Addr().As16()), src.Port())
		dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
	}
	return sockDiagUID(unix.AF_INET6, src, dst)
}

// sockDiagUID asks the kernel for the one TCP socket of family whose source
// is src and destination dst, and returns its owner's uid.
func sockDiagUID(family uint8, src, dst netip.AddrPort) (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, os.NewSyscallError("socket(NETLINK_SOCK_DIAG)", err)
	}
	defer unix.Close(fd)
	// A lookup answers at once; a kernel that does not would otherwise hold
	// the accepting goroutine.
	tv := unix.Timeval{Sec: 1}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)

	seq := diagSeq.Add(1)
	req := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST) // one socket, not a dump
	ne.PutUint32(req[8:], seq)
	b := req[nlmsgHdrLen:]
	b[0] = family
	b[1] = unix.IPPROTO_TCP
	ne.PutUint32(b[4:], tcpAllStates)
	putSockID(b[inetDiagIDStart:], src, dst)

	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, os.NewSyscallError("sendto(NETLINK_SOCK_DIAG)", err)
	}
	buf := make([]byte, 8192)
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return 0, os.NewSyscallError("recvfrom(NETLINK_SOCK_DIAG)", err)
		}
		// Only the kernel (port 0) answers for the kernel.
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue
		}
		uid, done, err := parseDiagAnswer(buf[:n], seq, src, dst)
		if done {
			return uid, err
		}
	}
}

// putSockID writes a struct inet_diag_sockid: ports and addresses in
// network order, no interface, no cookie.
func putSockID(b []byte, src, dst netip.AddrPort) {
	binary.BigEndian.PutUint16(b[0:], src.Port())
	binary.BigEndian.PutUint16(b[2:], dst.Port())
	putAddr(b[4:20], src.Addr())
	putAddr(b[20:36], dst.Addr())
	binary.NativeEndian.PutUint32(b[36:], 0)
	binary.NativeEndian.PutUint32(b[40:], inetDiagNoCook)
	binary.NativeEndian.PutUint32(b[44:], inetDiagNoCook)
}

func putAddr(b []byte, a netip.Addr) {
	clear(b)
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// parseDiagAnswer reads one datagram of answers to request seq. done is
// false when the datagram held nothing for that request.
func parseDiagAnswer(b []byte, seq uint32, src, dst netip.AddrPort) (uid uint32, done bool, err error) {
	ne := binary.NativeEndian
	for len(b) >= nlmsgHdrLen {
		l := int(ne.Uint32(b[0:]))
		if l < nlmsgHdrLen || l > len(b) {
			return 0, true, errors.New("server: malformed sock_diag answer")
		}
		typ, mseq := ne.Uint16(b[4:]), ne.Uint32(b[8:])
		msg := b[nlmsgHdrLen:l]
		if next := (l + 3) &^ 3; next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}
		if mseq != seq {
			continue
		}
		switch typ {
		case unix.NLMSG_ERROR:
			if len(msg) < 4 {
				return 0, true, errors.New("server: malformed sock_diag error")
			}
			errno := -int32(ne.Uint32(msg))
			if errno == 0 {
				continue
			}
			if unix.Errno(errno) == unix.ENOENT {
				return 0, true, errNoSocket
			}
			return 0, true, os.NewSyscallError("sock_diag", unix.Errno(errno))
		case unix.NLMSG_DONE:
			return 0, true, errNoSocket
		case unix.SOCK_DIAG_BY_FAMILY:
			if len(msg) < inetDiagMsgLen {
				return 0, true, errors.New("server: short sock_diag answer")
			}
			uid, err := diagOwner(msg, src, dst)
			return uid, true, err
		}
	}
	return 0, false, nil
}

// diagOwner checks that msg (a struct inet_diag_msg) is the socket asked
// about and returns its owner's uid.
//
// The kernel answers with a listener or a connection in TIME_WAIT when it
// finds no open connection with these addresses, and reports uid 0 for the
// latter: a peer that wrote its request and closed at once would pass for
// root. Only a socket that an open file still holds (inode not 0) says who
// is there; anything else is refused.
func diagOwner(msg []byte, src, dst netip.AddrPort) (uint32, error) {
	ne := binary.NativeEndian
	id := msg[inetDiagMsgID:]
	gotSrc, gotDst, ok := sockIDAddrs(msg[0], id)
	if !ok || gotSrc != unmapPort(src) || gotDst != unmapPort(dst) {
		return 0, errors.New("server: sock_diag answered for another socket")
	}
	if ne.Uint32(msg[inetDiagMsgIno:]) == 0 {
		return 0, errNoSocket
	}
	return ne.Uint32(msg[inetDiagMsgUID:]), nil
}

// sockIDAddrs reads the addresses of a struct inet_diag_sockid of family,
// IPv4-mapped addresses unmapped.
func sockIDAddrs(family uint8, id []byte) (src, dst netip.AddrPort, ok bool) {
	sp, dp := binary.BigEndian.Uint16(id[0:]), binary.BigEndian.Uint16(id[2:])
	var sa, da netip.Addr
	switch family {
	case unix.AF_INET:
		sa = netip.AddrFrom4([4]byte(id[4:8]))
		da = netip.AddrFrom4([4]byte(id[20:24]))
	case unix.AF_INET6:
		sa = netip.AddrFrom16([16]byte(id[4:20])).Unmap()
		da = netip.AddrFrom16([16]byte(id[20:36])).Unmap()
	default:
		return src, dst, false
	}
	return netip.AddrPortFrom(sa, sp), netip.AddrPortFrom(da, dp), true
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
