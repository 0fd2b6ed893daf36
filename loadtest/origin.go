package loadtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/valyala/fasthttp"
)

// Default addresses of the local origin, also the ports the traffic files
// and loadtest/compare.sh assume.
const (
	DefaultOriginHTTP  = "127.0.0.1:18080"
	DefaultOriginHTTPS = "127.0.0.1:18443"
	DefaultOriginDNS   = "127.0.0.1:15353"
)

// OriginConfig configures the local origin. An empty address leaves that
// server off; OriginDefaults gives the standard addresses.
type OriginConfig struct {
	// HTTPAddr is where the plain HTTP server listens ("" = off).
	HTTPAddr string `yaml:"http_addr"`
	// HTTPSAddr is where the HTTPS server listens ("" = off). It presents,
	// for whatever SNI name the client sends, a certificate signed by a CA
	// generated at start (see Origin.CACertPEM).
	HTTPSAddr string `yaml:"https_addr"`
	// DNSAddr is where the authoritative DNS server listens on UDP and TCP ("" = off).
	DNSAddr string `yaml:"dns_addr"`
	// A is the address every A query is answered with; zero means 127.0.0.1.
	// It must be IPv4 (the origin is meant to sit in 127.0.0.0/8).
	A netip.Addr `yaml:"a"`
	// AAAA is the address AAAA queries are answered with; zero means AAAA
	// queries get an empty NOERROR answer (NODATA), so resolvers and
	// proxies fall back to A and reach the IPv4 origin.
	AAAA netip.Addr `yaml:"aaaa"`
	// TTL of every answer; zero means 300s.
	TTL time.Duration `yaml:"ttl"`
	// CNAME makes every A/AAAA answer a CNAME to CNAMETarget followed by the
	// target's address, as CDNs answer; it exercises CNAME inspection.
	CNAME bool `yaml:"cname"`
	// CNAMETarget is the CNAME target; empty means "edge.origin.test.".
	CNAMETarget string `yaml:"cname_target"`
	// CAFile, when set, is where the origin writes its CA certificate (PEM)
	// at start, for `loadtest http --ca FILE` or a TLS-inspecting proxy.
	CAFile string `yaml:"ca_file"`
}

// OriginDefaults returns the configuration `cordon loadtest origin` uses
// without flags.
func OriginDefaults() OriginConfig {
	return OriginConfig{HTTPAddr: DefaultOriginHTTP, HTTPSAddr: DefaultOriginHTTPS, DNSAddr: DefaultOriginDNS}
}

// Validate reports every invalid field.
func (c OriginConfig) Validate() error {
	var errs []error
	for _, f := range []struct{ name, addr string }{{"http_addr", c.HTTPAddr}, {"https_addr", c.HTTPSAddr}, {"dns_addr", c.DNSAddr}} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want host:port: %w", f.name, f.addr, err))
		}
	}
	if c.HTTPAddr == "" && c.HTTPSAddr == "" && c.DNSAddr == "" {
		errs = append(errs, errors.New("http_addr, https_addr, dns_addr: all empty, nothing to serve"))
	}
	if c.A.IsValid() && !c.A.Is4() {
		errs = append(errs, fmt.Errorf("a %s: want an IPv4 address", c.A))
	}
	if c.AAAA.IsValid() && !c.AAAA.Is6() {
		errs = append(errs, fmt.Errorf("aaaa %s: want an IPv6 address", c.AAAA))
	}
	if c.TTL < 0 || c.TTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("ttl %v: want 0 (300s) to 24h", c.TTL))
	}
	if c.CNAMETarget != "" {
		if _, ok := dns.IsDomainName(c.CNAMETarget); !ok {
			errs = append(errs, fmt.Errorf("cname_target %q: not a domain name", c.CNAMETarget))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: origin: %w", ErrConfig, err)
	}
	return nil
}

// Origin bodies: /1k and /64k, the same bytes for every host.
var (
	body1K  = makeBody(1 << 10)
	body64K = makeBody(64 << 10)
)

func makeBody(n int) []byte {
	b := make([]byte, n)
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789\n"
	for i := range b {
		b[i] = alphabet[i%len(alphabet)]
	}
	return b
}

// Origin is a running local origin. Close stops it.
type Origin struct {
	cfg       OriginConfig
	logger    *slog.Logger
	httpSrv   *fasthttp.Server
	httpsSrv  *fasthttp.Server
	httpLn    net.Listener
	httpsLn   net.Listener
	udp       *dns.Server
	tcp       *dns.Server
	ca        *x509.Certificate
	caKey     *ecdsa.PrivateKey
	caPEM     []byte
	certMu    sync.Mutex
	certs     map[string]*tls.Certificate
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// StartOrigin starts the servers cfg asks for and returns once they all
// accept connections. logger may be nil (slog.Default()).
func StartOrigin(cfg OriginConfig, logger *slog.Logger) (*Origin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	if !cfg.A.IsValid() {
		cfg.A = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if cfg.TTL == 0 {
		cfg.TTL = 300 * time.Second
	}
	if cfg.CNAMETarget == "" {
		cfg.CNAMETarget = "edge.origin.test."
	}
	cfg.CNAMETarget = dns.CanonicalName(cfg.CNAMETarget)
	o := &Origin{cfg: cfg, logger: logger.With("component", "loadtest-origin"), certs: make(map[string]*tls.Certificate)}
	if err := o.start(); err != nil {
		o.Close()
		return nil, err
	}
	return o, nil
}

func (o *Origin) start() error {
	if o.cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", o.cfg.HTTPAddr)
		if err != nil {
			return fmt.Errorf("loadtest: origin http listen: %w", err)
		}
		o.httpLn = ln
		o.httpSrv = o.newHTTPServer()
		o.serveHTTP(o.httpSrv, ln)
	}
	if o.cfg.HTTPSAddr != "" {
		if err := o.makeCA(); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", o.cfg.HTTPSAddr)
		if err != nil {
			return fmt.Errorf("loadtest: origin https listen: %w", err)
		}
		o.httpsLn = ln
		o.httpsSrv = o.newHTTPServer()
		tlsLn := tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: o.certificate})
		o.serveHTTP(o.httpsSrv, tlsLn)
		if o.cfg.CAFile != "" {
			if err := os.WriteFile(o.cfg.CAFile, o.caPEM, 0o644); err != nil {
				return fmt.Errorf("loadtest: origin write ca_file: %w", err)
			}
		}
	}
	if o.cfg.DNSAddr != "" {
		if err := o.startDNS(); err != nil {
			return err
		}
	}
	return nil
}

func (o *Origin) newHTTPServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       o.serveRequest,
		Name:                          "cordon-loadtest-origin",
		ReadTimeout:                   30 * time.Second,
		WriteTimeout:                  30 * time.Second,
		IdleTimeout:                   60 * time.Second,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		Logger:                        slogPrintf{o.logger},
	}
}

func (o *Origin) serveHTTP(s *fasthttp.Server, ln net.Listener) {
	o.wg.Go(func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
			o.logger.Error("origin http server stopped", "err", err)
		}
	})
}

// serveRequest answers /1k and /64k for any host and method GET or HEAD.
func (o *Origin) serveRequest(ctx *fasthttp.RequestCtx) {
	var body []byte
	switch string(ctx.Path()) {
	case "/1k":
		body = body1K
	case "/64k":
		body = body64K
	case "/healthz":
		body = []byte("ok\n")
	default:
		ctx.Error("not found: the origin serves /1k and /64k\n", fasthttp.StatusNotFound)
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Error("method not allowed\n", fasthttp.StatusMethodNotAllowed)
		return
	}
	ctx.Response.Header.SetContentTypeBytes(contentTypeText)
	ctx.Response.SetBodyRaw(body)
}

var contentTypeText = []byte("text/plain")

// makeCA creates the origin's CA key and certificate.
func (o *Origin) makeCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("loadtest: origin ca key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "cordon loadtest origin CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("loadtest: origin ca certificate: %w", err)
	}
	o.ca, err = x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("loadtest: origin ca certificate: %w", err)
	}
	o.caKey = key
	o.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return nil
}

// maxLeafCerts bounds the per-name certificate cache; when full it starts over.
const maxLeafCerts = 100_000

// certificate returns (minting on first use) a leaf certificate for the SNI
// name, or for 127.0.0.1/localhost when the client sent none.
func (o *Origin) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		name = "localhost"
	}
	o.certMu.Lock()
	defer o.certMu.Unlock()
	if c, ok := o.certs[name]; ok {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("loadtest: origin leaf key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, o.ca, &key.PublicKey, o.caKey)
	if err != nil {
		return nil, fmt.Errorf("loadtest: origin leaf certificate for %q: %w", name, err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	if len(o.certs) >= maxLeafCerts {
		clear(o.certs)
	}
	o.certs[name] = c
	return c, nil
}

func (o *Origin) startDNS() error {
	// UDP and TCP share one port: take the UDP port first, then TCP on the
	// same number, retrying when port 0 picked one TCP already uses.
	var pc net.PacketConn
	var ln net.Listener
	var err error
	for range 20 {
		pc, err = net.ListenPacket("udp", o.cfg.DNSAddr)
		if err != nil {
			return fmt.Errorf("loadtest: origin dns listen udp: %w", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if !strings.HasSuffix(o.cfg.DNSAddr, ":0") {
			return fmt.Errorf("loadtest: origin dns listen tcp: %w", err)
		}
	}
	if err != nil {
		return fmt.Errorf("loadtest: origin dns listen tcp: %w", err)
	}
	h := dns.HandlerFunc(o.serveDNS)
	o.udp = &dns.Server{PacketConn: pc, Handler: h}
	o.tcp = &dns.Server{Listener: ln, Handler: h}
	for _, s := range []*dns.Server{o.udp, o.tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		errc := make(chan error, 1)
		o.wg.Go(func() { errc <- s.ActivateAndServe() })
		select {
		case <-started:
		case err := <-errc:
			return fmt.Errorf("loadtest: origin dns serve: %w", err)
		}
	}
	return nil
}

// serveDNS answers any name authoritatively; see OriginConfig.
func (o *Origin) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeNotImplemented)
		_ = w.WriteMsg(m)
		return
	}
	if len(req.Question) != 1 {
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	m.SetReply(req)
	m.Authoritative = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(1232, false)
	}
	q := req.Question[0]
	ttl := uint32(o.cfg.TTL / time.Second)
	name := q.Name
	if q.Qclass == dns.ClassINET && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA) && o.cfg.CNAME &&
		!strings.EqualFold(name, o.cfg.CNAMETarget) {
		m.Answer = append(m.Answer, &dns.CNAME{
			Hdr:    dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl},
			Target: o.cfg.CNAMETarget,
		})
		name = o.cfg.CNAMETarget
	}
	switch {
	case q.Qclass != dns.ClassINET:
		m.SetRcode(req, dns.RcodeRefused)
	case q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   o.cfg.A.AsSlice(),
		})
	case q.Qtype == dns.TypeAAAA && o.cfg.AAAA.IsValid():
		m.Answer = append(m.Answer, &dns.AAAA{
			Hdr:  dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl},
			AAAA: o.cfg.AAAA.AsSlice(),
		})
	default:
		// NODATA: the name exists, the type does not; the SOA lets
		// resolvers cache the negative answer.
		m.Ns = append(m.Ns, &dns.SOA{
			Hdr:     dns.RR_Header{Name: q.Name, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns:      "ns.origin.test.",
			Mbox:    "hostmaster.origin.test.",
			Serial:  1,
			Refresh: 3600,
			Retry:   600,
			Expire:  86400,
			Minttl:  ttl,
		})
	}
	_ = w.WriteMsg(m)
}

// HTTPAddr is the address of the HTTP server ("" when off).
func (o *Origin) HTTPAddr() string { return lnAddr(o.httpLn) }

// HTTPSAddr is the address of the HTTPS server ("" when off).
func (o *Origin) HTTPSAddr() string { return lnAddr(o.httpsLn) }

// DNSAddr is the address of the DNS server, UDP and TCP ("" when off).
func (o *Origin) DNSAddr() string {
	if o.udp == nil {
		return ""
	}
	return o.udp.PacketConn.LocalAddr().String()
}

// CACertPEM is the CA certificate the HTTPS server's leaves chain to (nil when HTTPS is off).
func (o *Origin) CACertPEM() []byte { return o.caPEM }

func lnAddr(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// Close stops every server and waits for them to return.
func (o *Origin) Close() error {
	o.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, s := range []*fasthttp.Server{o.httpSrv, o.httpsSrv} {
			if s != nil {
				_ = s.ShutdownWithContext(ctx)
			}
		}
		// Serve may not have reached Accept yet when start failed midway.
		for _, ln := range []net.Listener{o.httpLn, o.httpsLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		for _, s := range []*dns.Server{o.udp, o.tcp} {
			if s != nil {
				_ = s.ShutdownContext(ctx)
			}
		}
		o.wg.Wait()
	})
	return nil
}

// slogPrintf adapts the fasthttp Printf logger to slog at debug level:
// the origin's connection errors are noise under load, not failures.
type slogPrintf struct{ l *slog.Logger }

func (s slogPrintf) Printf(format string, args ...any) {
	s.l.Debug(fmt.Sprintf(format, args...))
}

var _ fasthttp.Logger = slogPrintf{}
