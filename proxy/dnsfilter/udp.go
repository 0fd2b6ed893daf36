package dnsfilter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpServer serves one UDP socket with a few long-lived reader goroutines
// (GOMAXPROCS, at least 2) that read queries in batches, answer cached and
// blocked names in line and send those answers in one batch: such an
// answer never pays for a new goroutine, and the system calls are shared
// by up to udpBatch queries. A query that needs an upstream is handed to a
// goroutine of its own, so a slow upstream never holds up the readers.
type udpServer struct {
	s    *Server
	conn *net.UDPConn
	// pktinfo is set when the socket is bound to a wildcard address: each
	// answer then leaves from the address the query was sent to (IP_PKTINFO
	// / IPV6_PKTINFO), as clients require on multi-homed hosts.
	pktinfo bool
	wg      sync.WaitGroup // readers and deferred queries
	done    chan struct{}

	mu     sync.Mutex // orders close before or after the readers start
	closed bool
}

func newUDPServer(s *Server, conn *net.UDPConn) *udpServer {
	u := &udpServer{s: s, conn: conn, done: make(chan struct{})}
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && (la.IP == nil || la.IP.IsUnspecified()) {
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		u.pktinfo = err4 == nil || err6 == nil
	}
	return u
}

// serve runs the readers until close; it returns the first read error
// that is not the socket being closed.
func (u *udpServer) serve() error {
	n := max(2, runtime.GOMAXPROCS(0))
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	u.wg.Add(n)
	u.mu.Unlock()
	errc := make(chan error, n)
	for range n {
		go func() {
			defer u.wg.Done()
			errc <- u.readBatch()
		}()
	}
	var first error
	for range n {
		if err := <-errc; err != nil && first == nil {
			first = err
			u.close() // one reader failed for good: stop the others
		}
	}
	return first
}

func (u *udpServer) close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return
	}
	u.closed = true
	close(u.done)
	_ = u.conn.Close()
}

// wait waits for readers and deferred queries, at most until ctx is done.
func (u *udpServer) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// oobSize fits either family's destination + interface control message.
var oobSize = max(len(ipv4.NewControlMessage(ipv4.FlagDst|ipv4.FlagInterface)),
	len(ipv6.NewControlMessage(ipv6.FlagDst|ipv6.FlagInterface)))

// replySource caches the control message that makes an answer leave from
// the address its query came to; a reader's queries almost always come to
// the same address, so it is built once per change.
type replySource struct {
	in  []byte
	out []byte
}

func (r *replySource) get(oob []byte) []byte {
	if len(oob) == 0 {
		return nil
	}
	if bytes.Equal(oob, r.in) {
		return r.out
	}
	r.in = append(r.in[:0], oob...)
	r.out = nil
	cm6 := new(ipv6.ControlMessage)
	if cm6.Parse(oob) == nil && cm6.Dst != nil && cm6.Dst.To4() == nil {
		r.out = (&ipv6.ControlMessage{Src: cm6.Dst}).Marshal()
		return r.out
	}
	cm4 := new(ipv4.ControlMessage)
	if cm4.Parse(oob) == nil && cm4.Dst != nil {
		r.out = (&ipv4.ControlMessage{Src: cm4.Dst}).Marshal()
	} else if cm6.Dst != nil {
		r.out = (&ipv4.ControlMessage{Src: cm6.Dst}).Marshal()
	}
	return r.out
}

// udpBatch is how many datagrams one system call reads or writes
// (recvmmsg/sendmmsg on Linux, one at a time elsewhere).
const udpBatch = 32

// readBatch reads up to udpBatch queries per system call, answers the
// ones that need no upstream in line, and sends those answers with one
// system call.
func (u *udpServer) readBatch() error {
	pc := ipv4.NewPacketConn(u.conn) // the batch calls work for either family
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, readUDPSize)}
		if u.pktinfo {
			in[i].OOB = make([]byte, oobSize)
		}
	}
	out := make([]ipv4.Message, udpBatch)
	for i := range out {
		out[i].Buffers = make([][]byte, 1)
	}
	answered := make([]*query, 0, udpBatch)
	var src replySource
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			select {
			case <-u.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		now := time.Now()
		answered = answered[:0]
		w := 0
		for i := range n {
			m := &in[i]
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			from := ua.AddrPort()
			ctl := src.get(m.OOB[:m.NN])
			q := u.serveOne(m.Buffers[0][:m.N], from, ctl, now)
			if q == nil {
				continue
			}
			out[w].Buffers[0] = q.out
			out[w].OOB = ctl
			out[w].Addr = m.Addr
			w++
			answered = append(answered, q)
		}
		for sent := 0; sent < w; {
			k, err := pc.WriteBatch(out[sent:w], 0)
			if err != nil {
				if u.s.logger.Enabled(u.s.baseCtx, slog.LevelDebug) {
					u.s.logger.DebugContext(u.s.baseCtx, "write answers", logErr, err)
				}
				// Skip the datagram that failed; send the rest.
				k = max(k, 0) + 1
			}
			sent += k
		}
		for i, q := range answered {
			out[i].Buffers[0], out[i].OOB, out[i].Addr = nil, nil, nil
			u.s.record(q)
			putQuery(q)
		}
	}
}

// serveOne handles one datagram. It returns the query when its answer is
// ready to send (the caller sends, records and releases it), or nil when
// there is nothing to send now: the packet was dropped, or the query went
// to a goroutine of its own to wait for an upstream.
func (u *udpServer) serveOne(b []byte, from netip.AddrPort, ctl []byte, now time.Time) *query {
	q := getQuery()
	q.start = now
	q.transport = transportUDP
	q.client = from.Addr().Unmap()
	if !u.parse(b, q, from, ctl) {
		putQuery(q)
		return nil
	}
	q.mayDefer = true
	u.s.handle(q)
	if q.deferred {
		q.mayDefer, q.deferred, q.resumed = false, false, true
		ctl := append([]byte(nil), ctl...)
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			u.s.handle(q)
			u.finish(q, from, ctl)
		}()
		return nil
	}
	if q.out == nil {
		putQuery(q)
		return nil
	}
	return q
}

// parse unpacks a query into q.msg. Responses are dropped (no reflection);
// a packet whose header parses but whose body does not gets FORMERR with
// the header alone; shorter garbage is dropped.
func (u *udpServer) parse(b []byte, q *query, from netip.AddrPort, ctl []byte) bool {
	if len(b) < headerLen || b[2]&0x80 != 0 {
		u.s.metrics.invalid.Inc()
		return false
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		u.s.metrics.invalid.Inc()
		// ID, opcode and RD echoed; QR set; FORMERR; no sections.
		out := []byte{b[0], b[1], 0x80 | b[2]&0x79, byte(dns.RcodeFormatError), 0, 0, 0, 0, 0, 0, 0, 0}
		u.write(out, from, ctl)
		return false
	}
	q.msg = m
	return true
}

func (u *udpServer) finish(q *query, to netip.AddrPort, ctl []byte) {
	if q.out != nil {
		u.write(q.out, to, ctl)
		u.s.record(q)
	}
	putQuery(q)
}

func (u *udpServer) write(b []byte, to netip.AddrPort, ctl []byte) {
	if _, _, err := u.conn.WriteMsgUDPAddrPort(b, ctl, to); err != nil && u.s.logger.Enabled(u.s.baseCtx, slog.LevelDebug) {
		u.s.logger.DebugContext(u.s.baseCtx, "write answer", logClient, to.Addr(), logErr, err)
	}
}
