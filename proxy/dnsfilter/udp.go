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
// by up to udpBatch queries. A query that needs an upstream waits on its
// cache flight while the UDP upstream multiplexer (udpMux) asks for it,
// or, when the first upstream is not a UDP one, on a goroutine of its
// own: either way a slow upstream never holds up the readers.
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

// udpReader is one reader goroutine of a udpServer with its batches: the
// answers it will send in one system call (out, for the queries in
// answered), the upstream queries of its cache misses, also sent in one
// system call per upstream socket (udpMux), and the buffers it polls the
// upstream answers into.
type udpReader struct {
	u        *udpServer
	pc       *ipv4.PacketConn
	in, out  []ipv4.Message
	answered []*query
	src      replySource
	names    *nameTable // interned query names (parseQueryFast)

	ups   []muxSend // upstream queries to write, in order
	upOut []ipv4.Message
	upBuf []byte // room for udpBatch upstream queries of muxQueryMax bytes
	upIn  *rawBatch
}

// muxSend is one upstream query a reader has yet to write.
type muxSend struct {
	m   *udpMux
	mq  *muxQuery
	msg []byte
}

func newUDPReader(u *udpServer) *udpReader {
	r := &udpReader{
		u:        u,
		pc:       ipv4.NewPacketConn(u.conn), // the batch calls work for either family
		in:       make([]ipv4.Message, udpBatch),
		out:      make([]ipv4.Message, udpBatch),
		answered: make([]*query, 0, udpBatch),
		ups:      make([]muxSend, 0, udpBatch),
		upOut:    make([]ipv4.Message, udpBatch),
		upBuf:    make([]byte, 0, udpBatch*muxQueryMax),
		upIn:     newRawBatch(),
		names:    newNameTable(),
	}
	for i := range r.in {
		r.in[i].Buffers = [][]byte{make([]byte, readUDPSize)}
		if u.pktinfo {
			r.in[i].OOB = make([]byte, oobSize)
		}
	}
	for i := range r.out {
		r.out[i].Buffers = make([][]byte, 1)
		r.upOut[i].Buffers = make([][]byte, 1)
	}
	return r
}

// readBatch reads up to udpBatch queries per system call, answers the
// ones that need no upstream in line, sends their upstream queries for
// the others, reads the upstream answers that came meanwhile, and sends
// every answer that is ready with one system call.
func (u *udpServer) readBatch() error {
	r := newUDPReader(u)
	for {
		n, err := r.pc.ReadBatch(r.in, 0)
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
		for i := range n {
			m := &r.in[i]
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			from := ua.AddrPort()
			ctl := r.src.get(m.OOB[:m.NN])
			if q := u.serveOne(r, m.Buffers[0][:m.N], from, ctl, now); q != nil {
				r.queue(q, m.Addr, ctl)
			}
		}
		r.flushUpstream()
		// Answer the misses whose upstream answers came meanwhile: the
		// sockets' goroutines would only run once this reader waits.
		u.s.pool.poll(r)
		r.flush()
	}
}

// queue adds q's answer to the batch, sending the batch first when it is
// full.
func (r *udpReader) queue(q *query, to net.Addr, ctl []byte) {
	if len(r.answered) == len(r.out) {
		r.flush()
	}
	w := len(r.answered)
	r.out[w].Buffers[0] = q.out
	r.out[w].OOB = ctl
	r.out[w].Addr = to
	r.answered = append(r.answered, q)
}

// flush sends the queued answers, then records and releases their
// queries.
func (r *udpReader) flush() {
	w := len(r.answered)
	for sent := 0; sent < w; {
		k, err := r.pc.WriteBatch(r.out[sent:w], 0)
		if err != nil {
			if r.u.s.logger.Enabled(r.u.s.baseCtx, slog.LevelDebug) {
				r.u.s.logger.DebugContext(r.u.s.baseCtx, "write answers", logErr, err)
			}
			// Skip the datagram that failed; send the rest.
			k = max(k, 0) + 1
		}
		sent += k
	}
	for i, q := range r.answered {
		r.out[i].Buffers[0], r.out[i].OOB, r.out[i].Addr = nil, nil, nil
		r.u.s.record(q)
		waited := q.waited
		putQuery(q)
		if waited {
			r.u.wg.Done()
		}
	}
	r.answered = r.answered[:0]
}

// upstreamBuf returns room for one upstream query in the reader's
// buffer, or nil when it is full (flushUpstream empties it).
func (r *udpReader) upstreamBuf() []byte {
	if len(r.ups) == cap(r.ups) || cap(r.upBuf)-len(r.upBuf) < muxQueryMax {
		return nil
	}
	return r.upBuf[len(r.upBuf):len(r.upBuf)]
}

// queueUpstream queues mq's query (the n bytes upstreamBuf returned last,
// now packed) to be written at the end of the batch.
func (r *udpReader) queueUpstream(m *udpMux, mq *muxQuery, n int) {
	start := len(r.upBuf)
	r.upBuf = r.upBuf[:start+n]
	r.ups = append(r.ups, muxSend{m: m, mq: mq, msg: r.upBuf[start : start+n : start+n]})
}

// flushUpstream writes the queued upstream queries: one system call for
// each run of queries on one socket.
func (r *udpReader) flushUpstream() {
	for i := 0; i < len(r.ups); {
		sk := r.ups[i].mq.sock
		j := i
		for j < len(r.ups) && r.ups[j].mq.sock == sk {
			r.upOut[j-i].Buffers[0] = r.ups[j].msg
			j++
		}
		msgs := r.upOut[:j-i]
		for sent := 0; sent < len(msgs); {
			k, err := sk.pc.WriteBatch(msgs[sent:], 0)
			k = max(k, 0)
			if err != nil {
				// The query at sent+k failed; the ones before it went out.
				failed := []*muxQuery{r.ups[i+sent+k].mq}
				r.ups[i].m.sendFailed(sk, failed, err)
				k++
			}
			sent += k
		}
		for k := range msgs {
			msgs[k].Buffers[0] = nil
		}
		i = j
	}
	clear(r.ups)
	r.ups = r.ups[:0]
	r.upBuf = r.upBuf[:0]
}

// serveOne handles one datagram. It returns the query when its answer is
// ready to send (the caller sends, records and releases it), or nil when
// there is nothing to send now: the packet was dropped, or the query
// waits for an upstream (on its flight, or on a goroutine of its own).
func (u *udpServer) serveOne(r *udpReader, b []byte, from netip.AddrPort, ctl []byte, now time.Time) *query {
	q := getQuery()
	q.start = now
	q.transport = transportUDP
	q.client = from.Addr().Unmap()
	if !u.parse(r, b, q, from, ctl) {
		putQuery(q)
		return nil
	}
	q.mayDefer = true
	q.rd, q.from, q.ctlIn = r, from, ctl
	if u.s.handle(q) {
		return nil // waits for its upstream answer (answerWaiter sends it)
	}
	q.ctlIn = nil
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
//
// r's name table makes the common shape of query allocation-free
// (parseQueryFast); r may be nil.
func (u *udpServer) parse(r *udpReader, b []byte, q *query, from netip.AddrPort, ctl []byte) bool {
	if len(b) < headerLen || b[2]&0x80 != 0 {
		u.s.metrics.invalid.Inc()
		return false
	}
	if r != nil && parseQueryFast(b, &q.wire, r.names) {
		q.msg = &q.wire.msg
		return true
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
