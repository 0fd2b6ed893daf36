package dnsfilter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/policies"
)

// query is the state of one query through the pipeline. Queries are pooled:
// the hot path allocates no state of its own.
type query struct {
	msg       *dns.Msg
	client    netip.Addr
	transport transport
	// principal is set before handle for DoH token clients (tokenAuth);
	// otherwise handle identifies the client by address.
	principal *policies.Principal
	tokenAuth bool
	// mayDefer lets resolve return errDeferred instead of waiting for an
	// upstream (the UDP reader then finishes the query on a goroutine of
	// its own and runs handle again with resumed set).
	mayDefer bool
	deferred bool
	resumed  bool
	// muxOK lets resolve hand a miss to the UDP upstream multiplexer
	// (udpMux): the query then waits on its flight without a goroutine
	// (waited) and is answered by answerWaiter to from, with ctl.
	muxOK   bool
	waited  bool
	rd      *udpReader // the UDP reader that read the query
	from    netip.AddrPort
	ctlIn   []byte // the reader's control message, valid during serveOne
	ctl     []byte // its copy, kept while the query waits
	toAddr  net.UDPAddr
	toIP    [16]byte // toAddr.IP's bytes
	start   time.Time
	ed      ednsInfo
	maxSize int
	// wire holds msg for the queries parseQueryFast parsed.
	wire wireQuery

	req      policies.Request
	dec      policies.Decision
	verdict  categorizer.Verdict
	decided  bool
	action   metricAction
	rcode    int
	reason   string // event reason when no policy decision applies
	upTime   time.Duration
	cacheTTL uint32 // freshness of the answer (DoH Cache-Control)
	out      []byte
}

var queryPool = sync.Pool{New: func() any { return &query{out: make([]byte, 0, 1024)} }}

func getQuery() *query { return queryPool.Get().(*query) }

func putQuery(q *query) {
	if cap(q.out) > 64<<10 {
		q.out = nil
	}
	*q = query{out: q.out[:0], ctl: q.ctl[:0]}
	queryPool.Put(q)
}

// handle runs the pipeline for q.msg and leaves the wire answer in q.out
// (nil: send nothing). The order of the steps matters:
//
//  1. validate the message first: nothing else may look at a malformed one;
//  2. identify the client before spending anything on it, so unknown
//     clients get a minimal REFUSED (never an open resolver, no
//     amplification);
//  3. rate-limit identified clients (unknown ones never create limiter
//     state);
//  4. decide on the query name before any upstream traffic: a blocked name
//     is never resolved, so it cannot leak to the upstream or be used for
//     exfiltration;
//  5. ANY is answered locally (RFC 8482) after the decision, so a blocked
//     name gets its block answer whatever the type;
//  6. safe search rewrites allowed search engine names;
//  7. resolve from cache or upstream;
//  8. decide again on every CNAME target and answer address, since the
//     decision depends on the client and the cache is shared;
//  9. write the answer, truncated to the client's UDP size.
//
// handle returns true when q waits for an upstream answer without a
// goroutine (resolve handed it to the multiplexer): q then belongs to the
// flight, and the caller must not touch it again.
func (s *Server) handle(q *query) (waiting bool) {
	defer s.recoverQuery(q)
	m := q.msg
	// 1. Validate.
	if m.Response {
		q.out = nil
		return
	}
	q.ed = queryEDNS(m)
	q.maxSize = dns.MaxMsgSize
	if q.transport == transportUDP {
		q.maxSize = min(int(q.ed.size), s.cfg.MaxUDPSize)
	}
	if m.Opcode != dns.OpcodeQuery {
		s.metrics.invalid.Inc()
		s.answerRcode(q, dns.RcodeNotImplemented, maInvalid, noEDE, "")
		return
	}
	if len(m.Question) != 1 || len(m.Answer) > 0 || len(m.Ns) > 0 || len(m.Extra) > 2 {
		s.metrics.invalid.Inc()
		s.answerRcode(q, dns.RcodeFormatError, maInvalid, noEDE, "")
		return
	}
	if opt := m.IsEdns0(); opt != nil && opt.Version() != 0 {
		s.answerRcode(q, dns.RcodeBadVers, maInvalid, noEDE, "")
		return
	}
	qn := m.Question[0]
	if qn.Qclass != dns.ClassINET {
		q.reason = "unsupported_class"
		s.answerRcode(q, dns.RcodeRefused, maRefused, dns.ExtendedErrorCodeNotSupported, "")
		return
	}

	// 2. Identify.
	if !q.tokenAuth {
		p, ok := s.eng.ClientPrincipal(q.client)
		if !ok {
			q.reason = "unknown_client"
			s.answerRcode(q, dns.RcodeRefused, maRefused, dns.ExtendedErrorCodeProhibited, "")
			return
		}
		q.principal = p
	}

	// 3. Rate limit.
	if s.limiter != nil && !q.resumed && !s.limiter.allow(q.client, q.start) {
		s.metrics.rateLimited.Inc()
		q.reason = "rate_limited"
		s.answerRcode(q, dns.RcodeRefused, maRateLimited, noEDE, "")
		return
	}

	// 4. Decide on the name.
	q.req = policies.Request{
		Time:      q.start,
		ClientIP:  q.client,
		Principal: q.principal,
		Protocol:  policies.ProtoDNS,
		Host:      normalizeHost(qn.Name),
	}
	q.dec, q.verdict = s.eng.Check(&q.req)
	q.decided = true
	if q.dec.Blocked() {
		s.answerBlock(q, "")
		return
	}

	// 5. ANY.
	if qn.Qtype == dns.TypeANY {
		s.answerAny(q)
		return
	}

	do, cd := q.ed.do, m.CheckingDisabled
	key := cacheKey{name: q.req.Host, qtype: qn.Qtype, bits: keyBits(do, cd)}

	// 6. Safe search.
	if q.dec.SafeSearch {
		if target := safeSearchTarget(q.req.Host, s.cfg.YouTubeRestrict); target != "" {
			s.answerSafeSearch(q, target, do, cd)
			return
		}
	}

	// 7. Resolve.
	q.muxOK = q.mayDefer && q.rd != nil
	e, err := s.resolve(key, q)
	if err == errWaiting {
		return true
	}
	q.muxOK = false
	if err == errDeferred {
		return
	}
	s.answerResolved(q, e, err)
	return
}

// answerResolved writes the answer to q once its name is resolved (steps
// 7 to 9 of handle).
func (s *Server) answerResolved(q *query, e *entry, err error) {
	m := q.msg
	if errors.Is(err, ErrOverloaded) {
		s.answerRcode(q, dns.RcodeServerFailure, maServFail, dns.ExtendedErrorCodeOther, "too many upstream queries in flight")
		return
	}
	if err != nil {
		if s.logger.Enabled(s.baseCtx, slog.LevelDebug) {
			s.logger.DebugContext(s.baseCtx, "resolve failed", logHost, q.req.Host, logErr, err)
		}
		s.answerRcode(q, dns.RcodeServerFailure, maServFail, dns.ExtendedErrorCodeNoReachableAuthority, "upstream resolvers failed")
		return
	}

	// 8. Inspect the answer: CNAME cloaking and answer addresses.
	if s.inspect(q, e) {
		return
	}

	// 9. Answer.
	now := time.Now().UnixNano()
	q.out = e.appendAnswer(q.out[:0], m, q.ed, uint16(s.cfg.MaxUDPSize), now)
	q.rcode = e.rcode
	q.cacheTTL = e.remaining(now)
	q.action = maAllow
	s.truncate(q)
}

// inspect decides on every CNAME target and answer address of e for q's
// client. It answers with a block and returns true when one is blocked.
func (s *Server) inspect(q *query, e *entry) bool {
	for _, target := range e.cnames {
		r := q.req
		r.Host = target
		d, v := s.eng.Check(&r)
		if d.Blocked() {
			q.dec, q.verdict = d, v
			s.answerBlock(q, target)
			return true
		}
	}
	for _, ip := range e.ips {
		r := q.req
		r.DestIP = ip
		d, v := s.eng.Check(&r)
		if d.Blocked() {
			q.dec, q.verdict = d, v
			s.answerBlock(q, ip.String())
			return true
		}
	}
	return false
}

// errDeferred is resolve's answer when the query may not wait for an
// upstream here (query.mayDefer); errWaiting when it waits on its flight
// without a goroutine (query.muxOK).
var (
	errDeferred = errors.New("dnsfilter: resolution deferred")
	errWaiting  = errors.New("dnsfilter: waiting for the upstream")
)

// resolve returns the answer for key from the cache, or from upstream with
// concurrent misses of one key coalesced into one upstream query.
func (s *Server) resolve(key cacheKey, q *query) (*entry, error) {
	now := time.Now().UnixNano()
	if e := s.cache.get(key, now); e != nil {
		s.metrics.cacheHits.Inc()
		s.maybePrefetch(key, e, now)
		return e, nil
	}
	if q.muxOK {
		if err := s.resolveWaiting(key, q); err != errDeferred {
			return nil, err
		}
	}
	if q.mayDefer {
		q.deferred = true
		return nil, errDeferred
	}
	s.metrics.cacheMisses.Inc()
	ctx, cancel := context.WithTimeout(s.baseCtx, time.Duration(s.cfg.QueryTimeout))
	defer cancel()
	f, leader := s.cache.join(key)
	if !leader {
		select {
		case <-f.done:
			return f.e, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var (
		e   *entry
		err error
	)
	// Bound the upstream queries in flight: past the bound a flood of
	// unique names (random subdomain attack) gets SERVFAIL at once
	// instead of piling up goroutines and sockets.
	if n := s.inflight.Add(1); n > int64(s.cfg.MaxInflight) {
		err = ErrOverloaded
	} else {
		start := time.Now()
		e, err = s.fetch(ctx, key)
		q.upTime = time.Since(start)
	}
	s.inflight.Add(-1)
	f.e, f.err = e, err
	if err == nil {
		s.cache.put(key, e)
	}
	s.finishFlight(key, f, nil)
	return e, err
}

// resolveWaiting hands a cache miss of a UDP query to the multiplexer of
// the first upstream to try: q joins the flight of key (a new one is sent
// upstream) and waits without a goroutine. It returns errWaiting when q
// waits (q belongs to the flight from then on), ErrOverloaded past
// MaxInflight, or errDeferred when the first upstream is not a UDP one.
func (s *Server) resolveWaiting(key cacheKey, q *query) error {
	mux := s.pool.firstMux()
	if mux == nil {
		return errDeferred
	}
	if s.inflight.Load() >= int64(s.cfg.MaxInflight) {
		return ErrOverloaded
	}
	s.metrics.cacheMisses.Inc()
	q.ctl = append(q.ctl[:0], q.ctlIn...)
	q.ctlIn = nil
	r := q.rd
	q.waited = true
	r.u.wg.Add(1) // done once the answer is sent
	f, leader := s.cache.joinWait(key, q)
	// q belongs to the flight now: it may already be answered.
	if !leader {
		return errWaiting
	}
	if n := s.inflight.Add(1); n > int64(s.cfg.MaxInflight) {
		// Another reader took the last slot since the check above.
		s.inflight.Add(-1)
		f.err = ErrOverloaded
		s.finishFlight(key, f, r)
		return errWaiting
	}
	if !mux.send(key, f, r) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(s.baseCtx, time.Duration(s.cfg.QueryTimeout))
			defer cancel()
			e, err := s.fetch(ctx, key)
			if err == nil {
				s.cache.put(key, e)
			}
			s.inflight.Add(-1)
			f.e, f.err = e, err
			s.finishFlight(key, f, nil)
		}()
	}
	return errWaiting
}

// finishFlight ends flight f of key (f.e, f.err set) and answers the UDP
// queries that waited on it: in r's batch when r (the UDP reader that
// finishes the flight, or nil) reads their socket, else one by one.
func (s *Server) finishFlight(key cacheKey, f *flight, r *udpReader) {
	for _, q := range s.cache.finish(key, f) {
		s.answerWaiter(q, f.e, f.err, r)
	}
}

// recoverQuery, deferred, turns a panic while handling q into a counted,
// logged SERVFAIL answer.
func (s *Server) recoverQuery(q *query) {
	if r := recover(); r != nil {
		s.metrics.panics.Inc()
		s.logger.ErrorContext(s.baseCtx, "query handling panicked", logPanic, r, logClient, q.client)
		q.out = q.out[:0]
		s.answerRcode(q, dns.RcodeServerFailure, maServFail, noEDE, "")
	}
}

// answerWaiter answers a UDP query that waited on a flight and releases
// it (through r's batch when r reads its socket).
func (s *Server) answerWaiter(q *query, e *entry, err error, r *udpReader) {
	u := q.rd.u
	func() {
		defer s.recoverQuery(q)
		q.upTime = time.Since(q.start)
		s.answerResolved(q, e, err)
	}()
	if q.out == nil {
		putQuery(q)
		u.wg.Done()
		return
	}
	if r != nil && r.u == u {
		ip := q.from.Addr()
		if ip.Is4() {
			b := ip.As4()
			copy(q.toIP[:], b[:])
			q.toAddr.IP = q.toIP[:4]
		} else {
			q.toIP = ip.As16()
			q.toAddr.IP = q.toIP[:]
		}
		q.toAddr.Port = int(q.from.Port())
		r.queue(q, &q.toAddr, q.ctl)
		return
	}
	u.finish(q, q.from, q.ctl)
	u.wg.Done()
}

// fetch asks the upstreams for key and packs the answer.
func (s *Server) fetch(ctx context.Context, key cacheKey) (*entry, error) {
	r, up, err := s.pool.resolve(ctx, upstreamQuery(key, s.cfg.MaxUDPSize), nil)
	if err != nil {
		return nil, err
	}
	return s.pack(r, up)
}

// upstreamQuery is the message asking an upstream for key.
func upstreamQuery(key cacheKey, udpSize int) *dns.Msg {
	m := &dns.Msg{
		MsgHdr:   dns.MsgHdr{Id: dns.Id(), RecursionDesired: true, CheckingDisabled: key.bits&keyCD != 0},
		Question: []dns.Question{{Name: key.name + ".", Qtype: key.qtype, Qclass: dns.ClassINET}},
	}
	m.SetEdns0(uint16(udpSize), key.bits&keyDO != 0)
	return m
}

func (s *Server) pack(r *dns.Msg, up *upstream) (*entry, error) {
	e, err := newEntry(r, time.Now(), s.cache.lim)
	if err != nil {
		return nil, fmt.Errorf("dnsfilter: upstream %s: %w: %w", up.name, ErrBadAnswer, err)
	}
	return e, nil
}

// fetchAfter resolves key after the multiplexer's attempt at upstream u
// gave no usable answer, within timeout: a truncated answer (last.Truncated)
// is asked again over TCP from u, then the other upstreams are tried in
// order; last (a SERVFAIL or REFUSED answer, or nil) is the answer when
// none does better.
func (s *Server) fetchAfter(timeout time.Duration, key cacheKey, u *upstream, last *dns.Msg) (*entry, error) {
	ctx, cancel := context.WithTimeout(s.baseCtx, timeout)
	defer cancel()
	m := upstreamQuery(key, s.cfg.MaxUDPSize)
	if last != nil && last.Truncated {
		last = nil
		actx, acancel := context.WithTimeout(ctx, time.Duration(s.cfg.UpstreamTimeout))
		r, err := u.exchangeTCP(actx, m)
		acancel()
		if err == nil && r.Rcode != dns.RcodeServerFailure && r.Rcode != dns.RcodeRefused {
			return s.pack(r, u)
		}
		if err == nil {
			last = r
		}
	}
	r, up, err := s.pool.resolve(ctx, m, u)
	if last != nil && (err != nil || r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused) {
		r, up, err = last, u, nil
	}
	if err != nil {
		return nil, err
	}
	return s.pack(r, up)
}

// maybePrefetch refreshes a popular entry in the background when less than
// a tenth of its lifetime is left, at most prefetchMax at a time.
func (s *Server) maybePrefetch(key cacheKey, e *entry, now int64) {
	if s.cfg.Cache.NoPrefetch || e.ttl < 10 {
		return
	}
	hits := e.hits.Add(1)
	if int(hits) < s.cfg.Cache.PrefetchHits || e.remaining(now)*10 > e.ttl {
		return
	}
	if !e.prefetching.CompareAndSwap(false, true) {
		return
	}
	select {
	case s.prefetchSem <- struct{}{}:
	default:
		e.prefetching.Store(false)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.prefetchSem }()
		ctx, cancel := context.WithTimeout(s.baseCtx, time.Duration(s.cfg.QueryTimeout))
		defer cancel()
		ne, err := s.fetch(ctx, key)
		if err != nil {
			e.prefetching.Store(false)
			return
		}
		s.metrics.prefetches.Inc()
		s.cache.put(key, ne)
	}()
}

// truncate fits q.out into the client's UDP buffer: records that do not
// fit are dropped and TC is set, so the client retries over TCP.
func (s *Server) truncate(q *query) {
	if len(q.out) <= q.maxSize {
		return
	}
	var m dns.Msg
	if err := m.Unpack(q.out); err != nil {
		q.out = q.out[:0]
		s.answerRcode(q, dns.RcodeServerFailure, maServFail, noEDE, "")
		return
	}
	m.Truncate(q.maxSize)
	out, err := m.PackBuffer(q.out[:0])
	if err != nil {
		q.out = q.out[:0]
		s.answerRcode(q, dns.RcodeServerFailure, maServFail, noEDE, "")
		return
	}
	q.out = out
}

func keyBits(do, cd bool) uint8 {
	var b uint8
	if do {
		b |= keyDO
	}
	if cd {
		b |= keyCD
	}
	return b
}

// record finishes q: metrics and the access event.
func (s *Server) record(q *query) {
	s.metrics.query(q.transport, q.action, q.rcode).Inc()
	took := time.Since(q.start) // one clock read for the metric and the event
	s.metrics.latency[q.transport].Observe(took.Seconds())
	if s.events == nil || q.action == maInvalid {
		return
	}
	ev := eventPool.Get().(*policies.AccessEvent)
	s.fillEvent(ev, q, took)
	s.events.Record(ev)
	*ev = policies.AccessEvent{}
	eventPool.Put(ev)
}

var eventPool = sync.Pool{New: func() any { return new(policies.AccessEvent) }}

// fillEvent fills ev for q, answered took after it arrived.
func (s *Server) fillEvent(ev *policies.AccessEvent, q *query, took time.Duration) {
	ev.Time = q.start
	ev.Protocol = policies.ProtoDNS
	ev.Proto = policies.ProtoDNS.String()
	if p := q.principal; p != nil {
		ev.User, ev.Groups, ev.Location = p.User, p.Groups, p.Location
	}
	ev.ClientIP = q.client
	if len(q.msg.Question) == 1 {
		qt := q.msg.Question[0].Qtype
		if n, ok := dns.TypeToString[qt]; ok {
			ev.Method = n
		} else {
			ev.Method = "TYPE" + itoa(int(qt))
		}
		ev.Host = normalizeHost(q.msg.Question[0].Name)
	}
	ev.Status = q.rcode
	ev.BytesDown = int64(len(q.out))
	ev.Upstream = q.upTime
	ev.Latency = took - q.upTime
	if !q.decided {
		ev.Action = policies.ActionBlock.String()
		ev.Reason = q.reason
		return
	}
	d := q.dec
	ev.Categories, ev.Threats = s.eng.Names(q.verdict)
	ev.Country = q.verdict.Country.String()
	// DNS cannot show a warn page: warn is enforced as allow, and the
	// rule's own action stays in RuleAction.
	ev.Action = policies.ActionAllow.String()
	if d.Action == policies.ActionBlock {
		ev.Action = policies.ActionBlock.String()
	}
	ev.RuleAction = d.RuleAction.String()
	ev.Monitor = d.Monitor
	ev.RuleID = d.RuleID
	ev.PolicyVersion = d.Version
	ev.Reason = d.Reason.String()
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			break
		}
	}
	return string(b[i:])
}
