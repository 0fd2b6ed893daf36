package dnsfilter

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
)

// A udpMux sends the cache misses of UDP clients to one UDP upstream
// without a goroutine or a socket per query: the UDP reader that got the
// query registers it on a shared connected socket and goes on with its
// batch, and sends the batch's upstream queries with one system call at
// its end (udpReader.flushUpstream); the answer is matched to the query by
// message ID and finished by whoever reads it first — the UDP readers poll
// the upstream sockets after each batch (udpMux.poll, which queues the
// answers to the waiting clients in the reader's own send batch), and a
// goroutine per socket waits in the network poller for the answers that
// come while the readers are idle.
// (On one CPU a goroutine woken by the network poller only runs when
// every other goroutine waits, or when the scheduler preempts the
// readers every 10 ms: without the polling, a busy server would answer
// its misses up to 10 ms late.)
//
// A socket takes at most muxSocketUses queries, then a new one takes
// over (a new source port) and the old one closes when its last answer
// is in. Answers are accepted only from the upstream's address (the
// socket is connected), with the ID of a query in flight on that socket
// and its exact question. An attempt that times out, fails, or gets a
// truncated, SERVFAIL or REFUSED answer is handed to the blocking path
// (Server.fetchAfter on a goroutine), which tries the other upstreams in
// order and TCP on truncation, exactly as for TCP and DoH clients; an
// ICMP port unreachable (ECONNREFUSED on the connected socket) fails
// every attempt in flight on the socket at once, so a dead upstream
// costs no timeout.
type udpMux struct {
	s *Server
	u *upstream

	mu       sync.Mutex
	active   *muxSocket
	sockets  []*muxSocket // every open socket, active included
	expiries []*muxQuery  // in send order: the attempt timeout is fixed
	closed   bool

	pending  atomic.Int64 // queries waiting for an answer
	duration prometheus.Observer
	errors   prometheus.Counter
	stop     chan struct{}
	wg       sync.WaitGroup
}

// muxSocketUses is how many queries one upstream socket carries before
// another (a new source port) takes over.
const muxSocketUses = 1024

// muxReadSize is the read buffer for upstream answers: more than the
// EDNS buffer size the filter advertises to its upstreams (a larger
// datagram is cut by the kernel, fails to unpack and is ignored).
const muxReadSize = 4096

// muxSocketBuffer is the receive buffer asked for each upstream socket:
// room for the answers of a burst of misses while the readers are busy.
const muxSocketBuffer = 1 << 20

// muxQueryMax bounds a packed upstream query: header, a name of at most
// 255 octets, type and class, an OPT record without options.
const muxQueryMax = headerLen + 255 + 4 + 11

type muxSocket struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn // batch writes (either family)
	poll rawPoller        // non-blocking reads of the same socket (udpMux.poll)

	// guarded by udpMux.mu
	queries map[uint16]*muxQuery
	uses    int
	retired bool
}

// muxQuery is one upstream attempt in flight.
type muxQuery struct {
	key  cacheKey
	f    *flight
	sock *muxSocket
	id   uint16
	sent time.Time
	done bool // answered, failed or timed out (guarded by udpMux.mu)
}

func newUDPMux(s *Server, u *upstream) *udpMux {
	return &udpMux{
		s: s, u: u, stop: make(chan struct{}),
		duration: s.metrics.upstreamDuration.WithLabelValues(u.name),
		errors:   s.metrics.upstreamErrors.WithLabelValues(u.name),
	}
}

// start runs the expiry sweep until close.
func (m *udpMux) start() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		tick := max(time.Duration(m.s.cfg.UpstreamTimeout)/8, 10*time.Millisecond)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case now := <-t.C:
				m.expire(now)
			}
		}
	}()
}

// close stops the sweep and the socket readers and fails what is still
// in flight (the server is shutting down).
func (m *udpMux) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	socks := m.sockets
	m.sockets, m.active = nil, nil
	var left []*muxQuery
	for _, sk := range socks {
		for _, mq := range sk.queries {
			if !mq.done {
				mq.done = true
				m.pending.Add(-1)
				left = append(left, mq)
			}
		}
		sk.queries = nil
		_ = sk.conn.Close()
		sk.poll.close()
	}
	m.expiries = nil
	m.mu.Unlock()
	close(m.stop)
	for _, mq := range left {
		m.complete(mq, nil, ErrServerClosed, nil)
	}
	m.wg.Wait()
}

// send registers the query for key (led by flight f) on the active
// socket and queues it in r, which writes it at the end of its batch
// (udpReader.flushUpstream). It returns false when it could not (the
// caller then resolves another way).
func (m *udpMux) send(key cacheKey, f *flight, r *udpReader) bool {
	mq := &muxQuery{key: key, f: f}
	buf := r.upstreamBuf()
	if buf == nil {
		r.flushUpstream()
		buf = r.upstreamBuf()
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return false
	}
	sk, err := m.socketLocked()
	if err != nil {
		m.mu.Unlock()
		if m.s.logger.Enabled(m.s.baseCtx, slog.LevelDebug) {
			m.s.logger.DebugContext(m.s.baseCtx, "upstream socket", logUpstream, m.u.name, logErr, err)
		}
		return false
	}
	id := uint16(rand.Uint32())
	for sk.queries[id] != nil {
		id++
	}
	msg, err := appendQuery(buf, id, key, uint16(m.s.cfg.MaxUDPSize))
	if err != nil {
		m.mu.Unlock()
		return false
	}
	mq.id, mq.sock = id, sk
	mq.sent = time.Now()
	sk.queries[id] = mq
	sk.uses++
	m.expiries = append(m.expiries, mq)
	m.pending.Add(1)
	m.mu.Unlock()
	r.queueUpstream(m, mq, len(msg))
	return true
}

// sendFailed ends the attempts of mqs (written in one batch to sk) when the
// write failed with err.
func (m *udpMux) sendFailed(sk *muxSocket, mqs []*muxQuery, err error) {
	if errors.Is(err, syscall.ECONNREFUSED) {
		m.refused(sk, err)
	}
	for _, mq := range mqs {
		m.fail(mq, err)
	}
}

// socketLocked returns the socket to send on, opening a new one when the
// active one has carried muxSocketUses queries.
func (m *udpMux) socketLocked() (*muxSocket, error) {
	if sk := m.active; sk != nil && sk.uses < muxSocketUses {
		return sk, nil
	}
	if old := m.active; old != nil {
		old.retired = true
		m.active = nil
		if len(old.queries) == 0 {
			m.closeSocketLocked(old)
		}
	}
	raddr, err := net.ResolveUDPAddr("udp", m.u.addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(muxSocketBuffer)
	sk := &muxSocket{conn: conn, pc: ipv4.NewPacketConn(conn), queries: make(map[uint16]*muxQuery)}
	sk.poll = newRawPoller(conn)
	m.active = sk
	m.sockets = append(m.sockets, sk)
	m.wg.Add(1)
	go m.readLoop(sk)
	return sk, nil
}

func (m *udpMux) closeSocketLocked(sk *muxSocket) {
	for i, o := range m.sockets {
		if o == sk {
			m.sockets = append(m.sockets[:i], m.sockets[i+1:]...)
			break
		}
	}
	_ = sk.conn.Close()
	sk.poll.close()
}

// readLoop waits for the answers of one socket until it is closed.
func (m *udpMux) readLoop(sk *muxSocket) {
	defer m.wg.Done()
	buf := make([]byte, muxReadSize)
	for {
		n, err := sk.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				m.refused(sk, err)
			}
			continue
		}
		m.answer(sk, buf[:n], nil)
	}
}

// poll reads the answers that are waiting on the sockets without
// blocking, into r's buffers; the answers to r's clients join r's batch.
func (m *udpMux) poll(r *udpReader) {
	if m.pending.Load() == 0 {
		return
	}
	var socks [4]*muxSocket // the newest ones; older ones have their goroutine
	m.mu.Lock()
	n := copy(socks[:], m.sockets[max(0, len(m.sockets)-len(socks)):])
	m.mu.Unlock()
	for _, sk := range socks[:n] {
		for {
			k, err := sk.poll.readBatch(r.upIn)
			if errors.Is(err, syscall.ECONNREFUSED) {
				m.refused(sk, err)
				continue
			}
			for i := range k {
				m.answer(sk, r.upIn.datagram(i), r)
			}
			if k < len(r.upIn.bufs) {
				break
			}
		}
	}
}

// refused ends every attempt in flight on sk: the upstream's port is
// closed (an ICMP port unreachable came back on the connected socket),
// so none of them will be answered.
func (m *udpMux) refused(sk *muxSocket, err error) {
	m.mu.Lock()
	var failed []*muxQuery
	for _, mq := range sk.queries {
		if !mq.done {
			failed = append(failed, mq)
		}
	}
	for _, mq := range failed {
		m.doneLocked(mq)
	}
	m.mu.Unlock()
	for _, mq := range failed {
		m.u.observe(0, err)
		m.errors.Inc()
		m.fallback(mq, nil)
	}
}

// answer matches one datagram to its query and finishes it; r is the
// reader that read it (nil: the socket's goroutine). Readers and the
// socket's goroutine read concurrently, so two answers to one query that
// arrive back to back may finish it in either order; a later one is
// ignored.
func (m *udpMux) answer(sk *muxSocket, b []byte, r *udpReader) {
	if len(b) < headerLen {
		return
	}
	id := binary.BigEndian.Uint16(b)
	m.mu.Lock()
	mq := sk.queries[id]
	m.mu.Unlock()
	if mq == nil {
		return // late, duplicate or forged
	}
	msg := new(dns.Msg)
	if err := msg.Unpack(b); err != nil || !msg.Response || !answersKey(msg, mq.key) {
		return // not the answer to this query: keep waiting until the timeout
	}
	m.mu.Lock()
	if mq.done {
		m.mu.Unlock()
		return // another reader finished it meanwhile
	}
	m.doneLocked(mq)
	m.mu.Unlock()
	rtt := time.Since(mq.sent)
	m.u.observe(rtt, nil)
	m.duration.Observe(rtt.Seconds())
	if msg.Truncated || msg.Rcode == dns.RcodeServerFailure || msg.Rcode == dns.RcodeRefused {
		// The blocking path retries over TCP or with the next upstream
		// and keeps this answer if nothing better comes.
		m.fallback(mq, msg)
		return
	}
	e, err := newEntry(msg, time.Now(), m.s.cache.lim)
	if err != nil {
		m.complete(mq, nil, errors.Join(ErrBadAnswer, err), r)
		return
	}
	m.s.cache.put(mq.key, e)
	m.complete(mq, e, nil, r)
}

// doneLocked takes mq out of its socket, closing a retired socket whose
// last query it was.
func (m *udpMux) doneLocked(mq *muxQuery) {
	mq.done = true
	m.pending.Add(-1)
	sk := mq.sock
	delete(sk.queries, mq.id)
	if sk.retired && len(sk.queries) == 0 {
		m.closeSocketLocked(sk)
	}
}

// fail ends an attempt that could not be sent.
func (m *udpMux) fail(mq *muxQuery, err error) {
	m.mu.Lock()
	if mq.done {
		m.mu.Unlock()
		return
	}
	m.doneLocked(mq)
	m.mu.Unlock()
	m.u.observe(0, err)
	m.errors.Inc()
	m.fallback(mq, nil)
}

// expire ends the attempts older than the upstream timeout.
func (m *udpMux) expire(now time.Time) {
	timeout := time.Duration(m.s.cfg.UpstreamTimeout)
	var late []*muxQuery
	m.mu.Lock()
	i := 0
	for ; i < len(m.expiries); i++ {
		mq := m.expiries[i]
		if mq.done {
			continue
		}
		if now.Sub(mq.sent) < timeout {
			break
		}
		m.doneLocked(mq)
		late = append(late, mq)
	}
	m.expiries = append(m.expiries[:0], m.expiries[i:]...)
	m.mu.Unlock()
	for _, mq := range late {
		m.u.observe(timeout, errUpstreamTimeout)
		m.errors.Inc()
		m.duration.Observe(timeout.Seconds())
		m.fallback(mq, nil)
	}
}

var errUpstreamTimeout = errors.New("dnsfilter: upstream attempt timed out")

// fallback resolves mq's key on the blocking path, on a goroutine of its
// own (fetchAfter); last is this upstream's answer when it was truncated,
// SERVFAIL or REFUSED (nil: none).
func (m *udpMux) fallback(mq *muxQuery, last *dns.Msg) {
	s := m.s
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		left := time.Duration(s.cfg.QueryTimeout) - time.Since(mq.sent)
		e, err := s.fetchAfter(max(left, time.Millisecond), mq.key, m.u, last)
		if err == nil {
			s.cache.put(mq.key, e)
		}
		m.complete(mq, e, err, nil)
	}()
}

// complete ends mq's flight: every query waiting on it is answered (those
// of r's socket in r's batch when r is not nil).
func (m *udpMux) complete(mq *muxQuery, e *entry, err error, r *udpReader) {
	m.s.inflight.Add(-1)
	mq.f.e, mq.f.err = e, err
	m.s.finishFlight(mq.key, mq.f, r)
}

// answersKey reports whether r answers the question of key.
func answersKey(r *dns.Msg, key cacheKey) bool {
	if len(r.Question) != 1 {
		return false
	}
	q := r.Question[0]
	name := strings.TrimSuffix(q.Name, ".")
	return q.Qtype == key.qtype && q.Qclass == dns.ClassINET && strings.EqualFold(name, key.name)
}

// appendQuery appends the upstream query for key: RD set, CD from the
// key, one question, an OPT record with the DO bit from the key.
func appendQuery(b []byte, id uint16, key cacheKey, udpSize uint16) ([]byte, error) {
	var f3 byte
	if key.bits&keyCD != 0 {
		f3 |= flagCD
	}
	b = append(b, byte(id>>8), byte(id), flagRD, f3, 0, 1, 0, 0, 0, 0, 0, 0)
	var err error
	if b, err = appendName(b, key.name+"."); err != nil {
		return nil, err
	}
	b = append(b, byte(key.qtype>>8), byte(key.qtype), 0, byte(dns.ClassINET))
	return appendOPTHeader(b, udpSize, key.bits&keyDO != 0), nil
}
