package proxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// A tunnel relays the two directions of a CONNECT (after the ClientHello
// peek) between the client and the origin connection.
//
// Where both ends are TCP sockets each direction is one
// (*net.TCPConn).ReadFrom call, which the runtime turns into splice(2)
// through a pooled pipe: the bytes never enter user space and no relay
// buffer is held. The idle timeout then needs no deadline per read: one
// timer per tunnel wakes every half idle period and reads the kernel's
// byte counters of both sockets (TCP_INFO bytes_received and bytes_acked);
// a tunnel whose counters did not move for the idle period is closed,
// which ends both splices. A peer that stops reading is caught the same
// way: once the socket buffers are full nothing moves.
//
// Where the counters are not available (other systems, a connection that
// is not TCP) each direction falls back to copyIdle, which sets deadlines
// before its reads and writes.
type tunnel struct {
	client, up       net.Conn     // closed on idle
	clientTCP, upTCP *net.TCPConn // nil: not TCP
	idle             time.Duration

	// watchdog state, owned by the timer callback
	timer    *time.Timer
	period   time.Duration
	counters [4]uint64
	quiet    time.Time // last tick that saw traffic
	stopped  atomic.Bool

	// ended counts directions that reached EOF (halfClose).
	ended atomic.Int32

	// lastActive feeds copyIdle (fallback only).
	lastActive atomic.Int64
	fallback   bool
}

// newTunnel prepares a relay between client and up. idle <= 0 disables
// the idle timeout.
func newTunnel(client, up net.Conn, idle time.Duration) *tunnel {
	t := &tunnel{client: client, up: up, clientTCP: tcpConnOf(client), upTCP: tcpConnOf(up), idle: idle}
	t.lastActive.Store(time.Now().UnixNano())
	if t.clientTCP == nil || t.upTCP == nil || !tcpCountersSupported {
		t.fallback = true
		return t
	}
	if idle > 0 {
		t.period = max(idle/2, time.Millisecond)
		t.quiet = time.Now()
		t.timer = time.AfterFunc(t.period, t.tick)
	}
	return t
}

// tick compares the sockets' byte counters with the last tick and closes
// both connections once nothing moved for the idle period.
func (t *tunnel) tick() {
	if t.stopped.Load() {
		return
	}
	var now [4]uint64
	var ok1, ok2 bool
	now[0], now[1], ok1 = tcpCounters(t.clientTCP)
	now[2], now[3], ok2 = tcpCounters(t.upTCP)
	if !ok1 || !ok2 {
		// A socket already closed (the tunnel is ending) or counters
		// unreadable: nothing to watch any more.
		return
	}
	tm := time.Now()
	if now != t.counters {
		t.counters = now
		t.quiet = tm
	} else if tm.Sub(t.quiet) >= t.idle {
		_ = t.client.Close()
		_ = t.up.Close()
		return
	}
	t.timer.Reset(t.period)
}

// stop ends the watchdog; the relay is over.
func (t *tunnel) stop() {
	t.stopped.Store(true)
	if t.timer != nil {
		t.timer.Stop()
	}
}

// copy relays src to dst until EOF (nil error) or a failure. from is the
// connection src reads (src may put buffered bytes in front of it).
func (t *tunnel) copy(dst net.Conn, src io.Reader, from net.Conn) (int64, error) {
	if t.fallback {
		return copyIdle(dst, src, from, t.idle, &t.lastActive)
	}
	dt, st := tcpConnOf(dst), tcpConnOf(from)
	if dt == nil || st == nil || src != io.Reader(from) {
		return copyIdle(dst, src, from, t.idle, &t.lastActive)
	}
	return dt.ReadFrom(st)
}

// tcpConnOf returns the TCP socket under c, looking through the proxy's
// own wrappers (which must not hide it: splice needs *net.TCPConn on both
// sides), or nil.
func tcpConnOf(c net.Conn) *net.TCPConn {
	for range 4 {
		switch v := c.(type) {
		case *net.TCPConn:
			return v
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return nil
		}
	}
	return nil
}

// halfClose passes a direction's EOF on to dst. Only the first direction
// to end needs a half-close: when the second ends, both connections are
// closed right after, which sends the FIN anyway (one shutdown(2) less).
func (t *tunnel) halfClose(dst net.Conn) {
	if t.ended.Add(1) == 1 {
		closeWrite(dst)
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// copyBufPool holds relay buffers of the fallback copy: 16 KiB, one TLS
// record, per direction of an active tunnel.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// copyIdle copies src to dst until EOF or error, or until neither
// direction of the tunnel moved for idle. rc is the connection src reads
// from (its read deadline implements the idle timeout); a write to dst
// blocked for idle (a peer that stopped reading) fails too. It is the
// relay where splice and the socket counters are not available.
func copyIdle(dst net.Conn, src io.Reader, rc net.Conn, idle time.Duration, lastActive *atomic.Int64) (int64, error) {
	bp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		if idle > 0 {
			_ = rc.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			lastActive.Store(time.Now().UnixNano())
			if idle > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
			}
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
		}
		if err != nil {
			var ne net.Error
			if idle > 0 && errors.As(err, &ne) && ne.Timeout() &&
				time.Since(time.Unix(0, lastActive.Load())) < idle {
				continue // the other direction is active
			}
			if err == io.EOF {
				return total, nil
			}
			return total, err
		}
	}
}
