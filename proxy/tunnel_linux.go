package proxy

import (
	"net"

	"golang.org/x/sys/unix"
)

// tcpCountersSupported: Linux reports per-socket byte counters.
const tcpCountersSupported = true

// tcpCounters returns the bytes received from and the bytes sent and
// acknowledged by the peer of c (TCP_INFO), ok=false when they cannot be
// read (closed socket).
func tcpCounters(c *net.TCPConn) (received, acked uint64, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return 0, 0, false
	}
	return info.Bytes_received, info.Bytes_acked, true
}
