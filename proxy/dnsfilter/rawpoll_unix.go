//go:build unix

package dnsfilter

import (
	"net"
	"sync"
	"syscall"
)

// rawPoller reads a UDP socket without blocking and without the network
// poller: through a duplicate of its descriptor, so that a goroutine
// parked in a read of the socket itself (which holds that descriptor's
// read lock) does not stand in the way. The duplicate shares the socket's
// open file (and so its O_NONBLOCK, which Go sets): an empty queue is
// EAGAIN, and every datagram goes to exactly one of the two readers.
type rawPoller struct {
	mu     *sync.RWMutex // read: RLock; close: Lock (the descriptor is not reused under a read)
	fd     int
	closed bool
}

func newRawPoller(conn *net.UDPConn) rawPoller {
	rc, err := conn.SyscallConn()
	if err != nil {
		return rawPoller{fd: -1}
	}
	fd := -1
	if err := rc.Control(func(s uintptr) {
		if d, err := syscall.Dup(int(s)); err == nil {
			syscall.CloseOnExec(d)
			fd = d
		}
	}); err != nil {
		return rawPoller{fd: -1}
	}
	return rawPoller{mu: new(sync.RWMutex), fd: fd}
}

// readBatch reads the datagrams waiting on the socket into b, at most
// len(b.bufs); it returns how many (0 when none is waiting, or the poller
// is closed or unusable) and the socket's error, if any (ECONNREFUSED:
// an ICMP port unreachable came back).
func (p *rawPoller) readBatch(b *rawBatch) (int, error) {
	if p.fd < 0 {
		return 0, nil
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return 0, nil
	}
	n, err := b.sys.recv(p.fd, b)
	if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK {
		err = nil
	}
	return n, err
}

func (p *rawPoller) close() {
	if p.fd < 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		_ = syscall.Close(p.fd)
	}
}
