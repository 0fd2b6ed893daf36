//go:build !linux

package proxy

import "net"

// tcpCountersSupported: no portable per-socket byte counters; tunnels use
// the deadline-based copy.
const tcpCountersSupported = false

func tcpCounters(*net.TCPConn) (received, acked uint64, ok bool) { return 0, 0, false }
