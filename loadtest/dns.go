package loadtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// DNSConfig configures a DNS load run.
type DNSConfig struct {
	// Server is the DNS server host:port.
	Server string `yaml:"server"`
	// TCP sends queries over TCP (one connection per worker, reused);
	// false sends them over UDP (one socket per worker).
	TCP bool `yaml:"tcp"`
	// Queries are the names asked; query n of the run (over all workers)
	// asks Queries[n % len(Queries)].
	Queries []Query `yaml:"-"`
	// Hot, when > 0, keeps only the first Hot queries: a small hot set a
	// cache answers after the first round.
	Hot int `yaml:"hot"`
	// Unique prefixes every name with a label unique in the run
	// ("u1a2b.www.example.com."), so no cache can answer: every query goes
	// through the server's whole path to its upstream.
	Unique bool `yaml:"unique"`
	// Concurrency is the number of workers, each with one query in flight; 0 means 50.
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds each query; 0 means 2s.
	Timeout time.Duration `yaml:"timeout"`
	// Limits bound the run; Limits.Rate is the queries per second of an open-loop run.
	Limits `yaml:",inline"`
	// Progress, when set, is called about once a second while the run lasts.
	Progress func(Progress) `yaml:"-"`
}

// DNSDefaults returns the defaults of `cordon loadtest dns`.
func DNSDefaults() DNSConfig {
	return DNSConfig{
		Concurrency: 50,
		Timeout:     2 * time.Second,
		Limits:      Limits{Duration: 10 * time.Second, MaxRequests: 100_000_000},
	}
}

// Validate reports every invalid field.
func (c DNSConfig) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Server); err != nil {
		errs = append(errs, fmt.Errorf("server %q: want host:port: %w", c.Server, err))
	}
	if len(c.Queries) == 0 {
		errs = append(errs, errors.New("queries: no names"))
	}
	if c.Hot < 0 {
		errs = append(errs, fmt.Errorf("hot %d: want >= 0", c.Hot))
	}
	if c.Concurrency < 0 || c.Concurrency > 100_000 {
		errs = append(errs, fmt.Errorf("concurrency %d: want 1-100000", c.Concurrency))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %v: want > 0", c.Timeout))
	}
	errs = append(errs, c.Limits.validate()...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: dns: %w", ErrConfig, err)
	}
	return nil
}

// DNSResult is the outcome of a DNS run.
type DNSResult struct {
	Server      string        `json:"server"`
	Transport   string        `json:"transport"` // "udp" or "tcp"
	Loop        string        `json:"loop"`      // "closed" or "open"
	Concurrency int           `json:"concurrency"`
	Rate        float64       `json:"rate,omitempty"`
	Names       int           `json:"names"` // distinct names in rotation (0 with Unique: all distinct)
	Elapsed     time.Duration `json:"-"`
	ElapsedSec  float64       `json:"elapsed_s"`
	// Answers is the number of queries answered, whatever the rcode.
	Answers uint64  `json:"answers"`
	QPS     float64 `json:"qps"`
	// Rcodes counts answers by rcode name (NOERROR, NXDOMAIN, REFUSED, …).
	Rcodes map[string]uint64 `json:"rcodes"`
	// NoData counts NOERROR answers without answer records (how some
	// filters block, and what an AAAA for an IPv4-only name gets).
	NoData uint64 `json:"nodata"`
	// Truncated counts UDP answers with the TC bit.
	Truncated uint64 `json:"truncated"`
	// Retries counts TCP queries sent again on a new connection because
	// the server had closed the kept-alive one.
	Retries uint64 `json:"retries"`
	// Errors counts queries without an answer by kind: timeout, refused,
	// reset, eof, protocol (a reply that is not a DNS answer to the query).
	Errors  map[string]uint64 `json:"errors"`
	Latency Summary           `json:"latency"`
	Service *Summary          `json:"service,omitempty"`
	// Missed, in open loop, counts queries due before the end that were
	// never sent because every worker was still waiting: the server
	// could not keep up with the rate.
	Missed uint64 `json:"missed"`
}

// ErrorCount is the total of Errors.
func (r *DNSResult) ErrorCount() uint64 { return sumCounts(r.Errors) }

// RunDNS runs the load cfg describes. It returns an error only when cfg
// is invalid; failures of the server are counted in the result.
func RunDNS(ctx context.Context, cfg DNSConfig) (*DNSResult, error) {
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 50
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Hot > 0 && cfg.Hot < len(cfg.Queries) {
		cfg.Queries = cfg.Queries[:cfg.Hot]
	}
	sched := newSchedule(cfg.Limits)
	workers := make([]*dnsWorker, cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w := &dnsWorker{cfg: &cfg, sched: sched, lat: NewHistogram(), svc: NewHistogram(),
			rcodes: make(map[int]uint64), errs: make(map[string]uint64), buf: make([]byte, 64<<10)}
		workers[i] = w
		wg.Go(func() { w.run(ctx) })
	}
	stopIO := context.AfterFunc(ctx, func() {
		for _, w := range workers {
			w.abort()
		}
	})
	defer stopIO()
	stop := make(chan struct{})
	var pw sync.WaitGroup
	pw.Go(func() { sched.watchProgress(cfg.Progress, stop) })
	wg.Wait()
	close(stop)
	pw.Wait()

	res := &DNSResult{
		Server: cfg.Server, Transport: "udp", Loop: "closed",
		Concurrency: cfg.Concurrency, Rate: cfg.Rate, Names: len(cfg.Queries),
		Elapsed: time.Since(sched.start),
		Rcodes:  make(map[string]uint64), Errors: make(map[string]uint64),
	}
	if cfg.TCP {
		res.Transport = "tcp"
	}
	if cfg.Unique {
		res.Names = 0
	}
	lat, svc := NewHistogram(), NewHistogram()
	for _, w := range workers {
		lat.Merge(w.lat)
		svc.Merge(w.svc)
		for k, v := range w.rcodes {
			res.Rcodes[rcodeName(k)] += v
		}
		for k, v := range w.errs {
			res.Errors[k] += v
		}
		res.NoData += w.noData
		res.Truncated += w.truncated
		res.Retries += w.retries
	}
	res.Answers = lat.Count()
	res.ElapsedSec = res.Elapsed.Seconds()
	res.QPS = float64(res.Answers) / res.ElapsedSec
	res.Latency = lat.Summarize()
	if cfg.Rate > 0 {
		res.Loop = "open"
		s := svc.Summarize()
		res.Service = &s
		res.Missed = sched.missed()
	}
	return res, nil
}

func rcodeName(rc int) string {
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return "RCODE" + strconv.Itoa(rc)
}

// dnsWorker keeps one query in flight on its own socket or connection.
type dnsWorker struct {
	cfg   *DNSConfig
	sched *schedule

	mu      sync.Mutex // guards conn against abort
	aborted bool
	conn    *dns.Conn

	buf   []byte // receive buffer
	query []byte // packed query, reused
	id    uint16

	lat, svc          *Histogram
	rcodes            map[int]uint64
	errs              map[string]uint64
	noData, truncated uint64
	retries           uint64
}

func (w *dnsWorker) run(ctx context.Context) {
	defer w.closeConn()
	timer := stoppedTimer()
	for {
		i, due, ok := w.sched.take(ctx, timer)
		if !ok {
			return
		}
		q := &w.cfg.Queries[i%uint64(len(w.cfg.Queries))]
		sent, kind := w.do(q, i)
		end := time.Now()
		if kind != "" {
			if ctx.Err() != nil {
				return
			}
			w.errs[kind]++
			w.sched.errs.Add(1)
			if w.sched.interval == 0 && kind == "refused" {
				time.Sleep(10 * time.Millisecond) // see httpWorker.run
			}
			continue
		}
		w.lat.Record(end.Sub(due))
		w.svc.Record(end.Sub(sent))
		w.sched.done.Add(1)
	}
}

func (w *dnsWorker) do(q *Query, seq uint64) (sent time.Time, kind string) {
	sent = time.Now()
	reused := w.conn != nil
	kind = w.exchange(q, seq, sent.Add(w.cfg.Timeout))
	if reused && w.cfg.TCP && (kind == "eof" || kind == "reset") {
		// The server closed the kept-alive connection (servers cap the
		// queries per connection); a stub resolver reconnects and asks
		// again, so do we, once.
		w.retries++
		kind = w.exchange(q, seq, sent.Add(w.cfg.Timeout))
	}
	return sent, kind
}

// exchange sends one query and reads its answer, dialling first when needed.
func (w *dnsWorker) exchange(q *Query, seq uint64, deadline time.Time) (kind string) {
	if w.conn == nil {
		network := "udp"
		if w.cfg.TCP {
			network = "tcp"
		}
		d := net.Dialer{Deadline: deadline}
		c, err := d.Dial(network, w.cfg.Server)
		if err != nil {
			return dnsErrKind(err)
		}
		if !w.setConn(&dns.Conn{Conn: c}) {
			return "aborted"
		}
	}
	name := q.Name
	if w.cfg.Unique {
		name = "u" + strconv.FormatUint(seq, 36) + "." + name
	}
	w.id++
	w.query = appendQuery(w.query[:0], w.id, name, q.Type)
	_ = w.conn.SetDeadline(deadline)
	if _, err := w.conn.Write(w.query); err != nil {
		w.closeConn()
		return dnsErrKind(err)
	}
	for {
		n, err := w.conn.Read(w.buf)
		if err != nil {
			if w.cfg.TCP || !isTimeout(err) {
				w.closeConn()
			}
			return dnsErrKind(err)
		}
		msg := w.buf[:n]
		if n < 12 || msg[2]&0x80 == 0 {
			if w.cfg.TCP {
				w.closeConn()
			}
			return "protocol"
		}
		if binary.BigEndian.Uint16(msg) != w.id {
			if w.cfg.TCP {
				w.closeConn()
				return "protocol"
			}
			continue // a late answer to an earlier, timed-out query
		}
		rcode := int(msg[3] & 0x0f)
		w.rcodes[rcode]++
		if rcode == dns.RcodeSuccess && binary.BigEndian.Uint16(msg[6:]) == 0 {
			w.noData++
		}
		if msg[2]&0x02 != 0 {
			w.truncated++
		}
		return ""
	}
}

// appendQuery packs a recursive query for one name (fully qualified,
// without escapes, as ParseNames returns it) with an EDNS0 OPT record
// advertising a 1232-byte UDP buffer, as stub resolvers send today.
func appendQuery(b []byte, id uint16, name string, qtype uint16) []byte {
	b = append(b,
		byte(id>>8), byte(id),
		0x01, 0x00, // RD
		0, 1, // QDCOUNT
		0, 0, // ANCOUNT
		0, 0, // NSCOUNT
		0, 1, // ARCOUNT: the OPT record
	)
	for name != "" && name != "." {
		label, rest, _ := strings.Cut(name, ".")
		b = append(b, byte(len(label)))
		b = append(b, label...)
		name = rest
	}
	b = append(b, 0, byte(qtype>>8), byte(qtype), 0, byte(dns.ClassINET))
	// OPT: root name, type 41, class = UDP size, TTL 0, no options.
	return append(b, 0, 0, byte(dns.TypeOPT), 0x04, 0xd0, 0, 0, 0, 0, 0, 0)
}

func (w *dnsWorker) setConn(c *dns.Conn) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.aborted {
		c.Close()
		return false
	}
	w.conn = c
	return true
}

func (w *dnsWorker) closeConn() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func (w *dnsWorker) abort() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.aborted = true
	if w.conn != nil {
		_ = w.conn.SetDeadline(time.Unix(1, 0))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dnsErrKind names a failed query: timeout, refused (ICMP port
// unreachable on UDP, RST on TCP connect), reset, eof or protocol.
func dnsErrKind(err error) string {
	k := errKind("", err)
	return strings.TrimPrefix(k, "_")
}
