package main

import (
	"context"
	"crypto/tls"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/cordon-gw/cordon/categorizer"
	catredis "github.com/cordon-gw/cordon/categorizer/redisstore"
	"github.com/cordon-gw/cordon/policies"
	"github.com/cordon-gw/cordon/policies/console"
	polredis "github.com/cordon-gw/cordon/policies/redisstore"
	"github.com/cordon-gw/cordon/proxy"
	"github.com/cordon-gw/cordon/proxy/dnsfilter"
	"github.com/cordon-gw/cordon/reports"
	repredis "github.com/cordon-gw/cordon/reports/redisstore"
)

//go:embed openapi-feeds.json
var feedsOpenAPI []byte

// gateway is one running `cordon serve`: the parts its role needs, wired
// together. Tests start it in-process with listeners on port 0.
type gateway struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry

	rdb      redis.UniversalClient
	engine   *policies.Engine
	service  *policies.Service
	api      *policies.API
	console  *console.Console
	snaps    categorizer.SnapshotStore
	syncer   *categorizer.Syncer
	seen     *categorizer.NewlySeen
	geo      *categorizer.Geo
	pipeline *reports.Pipeline
	reportsH *reports.Handler
	proxy    *proxy.Server
	dns      *dnsfilter.Server

	adminLn net.Listener
	proxyLn net.Listener
	dnsUDP  net.PacketConn
	dnsTCP  net.Listener
	admin   *http.Server

	adminToken string
	indexReady atomic.Bool

	bg      sync.WaitGroup
	cancel  context.CancelFunc
	closers []func(context.Context) error
}

func (g *gateway) serves(part string) bool {
	switch g.cfg.Role {
	case "edge":
		return part == "traffic"
	case "control":
		return part == "control"
	}
	return true
}

// newGateway builds every part and opens the listeners, but serves nothing
// yet (start does). On error everything opened so far is closed.
func newGateway(ctx context.Context, cfg Config, logger *slog.Logger) (_ *gateway, err error) {
	g := &gateway{cfg: cfg, log: logger, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			g.close(context.Background()) // whatever was opened so far
		}
	}()
	g.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	bgctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel

	if cfg.Redis.Enabled() {
		redis.SetLogger(redisLogger{logger.With("component", "redis")})
		g.rdb = newRedisClient(cfg.Redis)
		g.closers = append(g.closers, func(context.Context) error { return g.rdb.Close() })
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		if perr := g.rdb.Ping(pctx).Err(); perr != nil {
			logger.Warn("redis unreachable at start; serving from the local cache until it returns", "err", perr)
		}
		pcancel()
	}

	trusted, _ := cfg.trustedNetworks()
	g.engine = policies.NewEngine(policies.EngineConfig{TrustedNetworks: trusted, Logger: logger, Registerer: g.reg})

	if err := g.setupCategorizer(ctx, bgctx); err != nil {
		return nil, err
	}
	if err := g.setupPolicies(ctx, bgctx); err != nil {
		return nil, err
	}
	if err := g.setupReports(); err != nil {
		return nil, err
	}
	if g.serves("traffic") {
		if err := g.setupTraffic(); err != nil {
			return nil, err
		}
	}
	if err := g.setupAdmin(); err != nil {
		return nil, err
	}
	return g, nil
}

// redisLogger sends go-redis's own messages (reconnects) to slog.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn("redis: " + fmt.Sprintf(format, v...))
}

// Dialing: one attempt per command with a short timeout, so an edge whose
// Redis is down starts (from its local cache) and answers in seconds; the
// pool reconnects by itself when Redis returns.
const (
	redisDialTimeout   = time.Second
	redisDialerRetries = 1
	redisMaxRetries    = 1
)

func newRedisClient(c RedisConfig) redis.UniversalClient {
	pw := c.Password
	if env := os.Getenv("CORDON_REDIS_PASSWORD"); env != "" {
		pw = env
	}
	if c.URL != "" {
		opt, err := redis.ParseURL(c.URL)
		if err == nil {
			if pw != "" {
				opt.Password = pw
			}
			opt.DialTimeout, opt.DialerRetries, opt.MaxRetries = redisDialTimeout, redisDialerRetries, redisMaxRetries
			return redis.NewClient(opt)
		}
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: c.Addrs, MasterName: c.MasterName, Username: c.Username, Password: pw, DB: c.DB,
		DialTimeout: redisDialTimeout, DialerRetries: redisDialerRetries, MaxRetries: redisMaxRetries,
	})
}

func (g *gateway) go_(name string, fn func() error) {
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		if err := fn(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) &&
			!errors.Is(err, net.ErrClosed) && !errors.Is(err, dnsfilter.ErrServerClosed) {
			g.log.Error("background task stopped", "task", name, "err", err)
		}
	}()
}

// setupCategorizer opens the snapshot store, loads the newest snapshot (or
// builds one from the feeds when this process controls them), and follows
// new snapshots.
func (g *gateway) setupCategorizer(ctx, bgctx context.Context) error {
	cfg := g.cfg.Categorizer
	if _, err := g.openSnapshotStore(); err != nil {
		return err
	}
	if cfg.GeoIP != "" {
		geo, err := categorizer.OpenGeo(cfg.GeoIP)
		if err != nil {
			return fmt.Errorf("geoip: %w", err)
		}
		g.geo = geo
		g.engine.SetGeo(geo)
		g.closers = append(g.closers, func(context.Context) error { return geo.Close() })
	}

	var firstSeen categorizer.FirstSeenStore
	if g.rdb != nil {
		fs, err := catredis.NewFirstSeen(g.rdb, catredis.Config{Prefix: g.cfg.Redis.KeyPrefix + "categorizer"}, 0)
		if err != nil {
			return fmt.Errorf("newly seen: %w", err)
		}
		firstSeen = fs
	} else {
		fs, err := categorizer.NewFileFirstSeen(g.cfg.path("firstseen.log"))
		if err != nil {
			return fmt.Errorf("newly seen: %w", err)
		}
		firstSeen = fs
	}
	if !cfg.NewlySeen.Disabled {
		established, stats, err := cfg.NewlySeen.LoadEstablished()
		if err != nil {
			return fmt.Errorf("newly seen: %w", err)
		}
		for i, st := range stats {
			if st.Invalid > 0 {
				g.log.Warn("newly seen: invalid lines in an established-domains file were skipped",
					"file", cfg.NewlySeen.EstablishedFiles[i], "domains", st.Domains, "invalid", st.Invalid, "first", st.Errors[0])
			}
		}
		g.seen = categorizer.NewNewlySeen(cfg.NewlySeen, firstSeen, g.log, g.reg)
		g.seen.SetEstablished(established)
		g.engine.SetNewlySeen(g.seen) // and every index SetIndex swaps in: its feeds are part of the baseline
		g.go_("newly-seen", func() error { return g.seen.Run(bgctx) })
	}

	if g.serves("control") {
		s, err := categorizer.NewSyncer(categorizer.SyncerConfig{
			Config: cfg, CacheDir: g.cfg.path("feeds"), Store: g.snaps, Logger: g.log, Registerer: g.reg,
		})
		if err != nil {
			return fmt.Errorf("feeds: %w", err)
		}
		g.syncer = s
	}

	var current uint64
	ix, err := categorizer.LoadLatest(ctx, g.snaps)
	switch {
	case err == nil:
	case errors.Is(err, categorizer.ErrNoSnapshot) && g.syncer != nil:
		g.log.Info("no feed snapshot yet: compiling the configured feeds")
		ix, err = g.syncer.Sync(ctx, false)
		if err != nil {
			return fmt.Errorf("feeds: first sync: %w", err)
		}
	case g.cfg.FailOpen:
		g.log.Warn("no feed snapshot available; fail_open is set, serving with an empty index", "err", err)
		ix = categorizer.EmptyIndex()
	default:
		return fmt.Errorf("no feed snapshot in the local cache or Redis (%w); start the control process first, or set fail_open", err)
	}
	if err := g.engine.SetIndex(ix); err != nil {
		return fmt.Errorf("feeds: %w", err)
	}
	current = ix.Version()
	g.indexReady.Store(true)
	releaseBuildMemory()
	g.log.Info("feed index loaded", "version", current, "entries", ix.Len())

	g.go_("snapshot-follow", func() error {
		var compiled func(uint64) *categorizer.Index
		if g.syncer != nil {
			compiled = g.syncer.Compiled
		}
		return categorizer.Follow(bgctx, g.snaps, current, g.log, compiled, func(ix *categorizer.Index) error {
			if err := g.engine.SetIndex(ix); err != nil {
				return err
			}
			g.log.Info("feed index swapped", "version", ix.Version(), "entries", ix.Len())
			releaseBuildMemory()
			return nil
		})
	})
	if g.syncer != nil {
		g.go_("feed-sync", func() error { return g.syncer.Run(bgctx, nil) }) // publishes to g.snaps; Follow applies
	}
	return nil
}

// openSnapshotStore opens the local snapshot cache and, with Redis, the
// shared store in front of it.
func (g *gateway) openSnapshotStore() (categorizer.SnapshotStore, error) {
	local, err := categorizer.NewFileStore(categorizer.FileStoreConfig{Dir: g.cfg.path("snapshots")})
	if err != nil {
		return nil, fmt.Errorf("snapshots: %w", err)
	}
	g.snaps = local
	if g.cfg.Redis.Enabled() {
		if g.rdb == nil {
			g.rdb = newRedisClient(g.cfg.Redis)
			g.closers = append(g.closers, func(context.Context) error { return g.rdb.Close() })
		}
		remote, err := catredis.New(g.rdb, catredis.Config{Prefix: g.cfg.Redis.KeyPrefix + "categorizer"})
		if err != nil {
			return nil, fmt.Errorf("snapshots: %w", err)
		}
		g.snaps = &categorizer.CachedStore{Remote: remote, Local: local, Logger: g.log}
	}
	return g.snaps, nil
}

// setupPolicies opens the policy store, makes sure a policy exists, and
// follows new versions.
func (g *gateway) setupPolicies(ctx, bgctx context.Context) error {
	var store policies.Store
	var changes policies.ChangeStore
	var edges policies.EdgeStore
	if g.rdb != nil {
		remote := polredis.New(g.rdb, polredis.Config{
			Prefix: g.cfg.Redis.KeyPrefix + "policy", Logger: g.log,
			// pub/sub announces changes at once; the poll catches the ones
			// missed while a subscription reconnects after an outage
			PollInterval: time.Second,
		})
		store = newCachedPolicyStore(remote, g.cfg.path("policy-cache.json"), g.log)
		changes, edges = remote, remote
	} else {
		fs, err := policies.OpenFileStore(g.cfg.path("policy"))
		if err != nil {
			return fmt.Errorf("policy store: %w", err)
		}
		store, changes = fs, fs
	}
	svc, err := policies.NewService(ctx, policies.ServiceConfig{Store: store, Changes: changes, Edges: edges, EdgeName: g.cfg.Name,
		Engine: g.engine, Logger: g.log, Registerer: g.reg})
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	g.service = svc
	if g.serves("control") {
		if err := g.seedPolicy(ctx); err != nil {
			return err
		}
		tok, generated, err := svc.EnsureAdminToken(ctx, g.cfg.DataDir, os.Getenv("CORDON_ADMIN_TOKEN"))
		if err != nil {
			return fmt.Errorf("admin token: %w", err)
		}
		g.adminToken = tok
		if generated {
			g.log.Info("generated the first admin token (shown once; also in the data directory)",
				"token", tok, "file", g.cfg.path("admin.token"))
		}
	}
	if !hasPolicy(svc) {
		if !g.cfg.FailOpen {
			return errors.New("no policy in the local cache or Redis; start the control process first, or set fail_open")
		}
		g.log.Warn("no policy available; fail_open is set, the default action (allow) applies")
	}
	g.go_("policy-follow", func() error { return svc.Run(bgctx) })
	// every process serves the running stage (edges decide with it, the
	// control answers lookups with it)
	g.go_("stage-follow", func() error { return svc.RunStage(bgctx) })
	if g.serves("control") {
		g.go_("stage-guard", func() error { return svc.RunStageGuard(bgctx, time.Second) })
	}
	if g.serves("traffic") {
		hb := policies.HeartbeatConfig{Name: g.cfg.Name, Role: g.cfg.Role, FeedVersion: func() uint64 {
			if ix := g.engine.Index(); ix != nil {
				return ix.Version()
			}
			return 0
		}}
		g.go_("edge-heartbeat", func() error { return svc.RunHeartbeat(bgctx, hb) })
	}
	return nil
}

func (g *gateway) setupReports() error {
	var store reports.Store
	if g.rdb != nil {
		s, err := repredis.New(g.rdb, repredis.Config{
			Prefix: g.cfg.Redis.KeyPrefix + "reports", Retention: g.cfg.Reports.Retention,
			MaxDomainsPerRow: g.cfg.Reports.MaxDomainsPerRow,
		})
		if err != nil {
			return fmt.Errorf("reports: %w", err)
		}
		store = s
	} else {
		s, err := reports.OpenLocal(g.cfg.Reports, g.log)
		if err != nil {
			return fmt.Errorf("reports: %w", err)
		}
		store = s
	}
	g.closers = append(g.closers, func(context.Context) error { return store.Close() })
	p, err := reports.New(g.cfg.Reports, reports.Deps{Store: store, Logger: g.log, Registerer: g.reg})
	if err != nil {
		return fmt.Errorf("reports: %w", err)
	}
	g.pipeline = p
	// closed before the store (closers run in reverse order)
	g.closers = append(g.closers, p.Close)
	g.reportsH = reports.NewHandler(p.Reader(), g.log)
	return nil
}

// events fans one access event out to the reports pipeline and to the
// policy service's ring of recent events (impact previews). Neither blocks.
type events struct {
	pipeline *reports.Pipeline
	service  *policies.Service
}

func (e events) Record(ev *policies.AccessEvent) {
	e.service.Record(ev)
	e.pipeline.Record(ev)
}

var (
	_ proxy.EventSink     = events{}
	_ dnsfilter.EventSink = events{}
	_ proxy.ReviewSink    = (*policies.Service)(nil)
)

func (g *gateway) setupTraffic() error {
	sink := events{pipeline: g.pipeline, service: g.service}
	px, err := proxy.New(g.cfg.Proxy, proxy.Deps{
		Engine: g.engine, Events: sink, Reviews: g.service, Logger: g.log, Registerer: g.reg,
	})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	g.proxy = px
	g.proxyLn, err = proxy.Listen(g.cfg.Proxy.Listen)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	dn, err := dnsfilter.New(g.cfg.DNS, dnsfilter.Deps{Engine: g.engine, Events: sink, Logger: g.log, Registerer: g.reg})
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	g.dns = dn
	dnsListen := g.cfg.DNS.Listen
	if dnsListen == "" {
		dnsListen = ":5353"
	}
	g.dnsUDP, g.dnsTCP, err = listenDNS(dnsListen)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

// listenDNS opens UDP and TCP on the same port. With port 0 the UDP port
// is picked first and TCP follows it; if that TCP port is taken, another
// pair is tried.
func listenDNS(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		_, p, _ := net.SplitHostPort(udp.LocalAddr().String())
		tcp, err := net.Listen("tcp", net.JoinHostPort(host, p))
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if port != "0" || attempt >= 20 {
			return nil, nil, err
		}
	}
}

func (g *gateway) setupAdmin() error {
	var err error
	if g.serves("control") {
		g.api, err = policies.NewAPI(policies.APIConfig{
			Service: g.service, Engine: g.engine, Ready: g.ready, Logger: g.log, Registerer: g.reg,
		})
		if err != nil {
			return fmt.Errorf("admin api: %w", err)
		}
		for _, r := range g.reportsH.APIRoutes() {
			g.api.Mount(r.Method, r.Pattern, policies.PermRead, r.Handler)
		}
		if err := g.api.AddOpenAPI(pathsAndSchemas(reports.OpenAPIFragment())); err != nil {
			return fmt.Errorf("admin api: reports openapi: %w", err)
		}
		if g.syncer != nil {
			g.api.Mount("GET", "/api/v1/feeds", policies.PermRead, categorizer.LearningHeader(g.seen, time.Now,
				categorizer.StatusHandler(g.syncer.Status, time.Now)))
			g.api.Mount("GET", "/api/v1/feeds/newly_seen", policies.PermRead, categorizer.NewlySeenHandler(g.seen, time.Now))
			if err := g.api.AddOpenAPI(feedsOpenAPI); err != nil {
				return fmt.Errorf("admin api: feeds openapi: %w", err)
			}
		}
		if g.console, err = console.New(console.Config{API: g.api, Logger: g.log}); err != nil {
			return fmt.Errorf("admin console: %w", err)
		}
	}
	g.adminLn, err = net.Listen("tcp", g.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if g.proxy != nil {
		// clients must not reach the admin API or the DNS filter through
		// the proxy, whatever allow_private_destinations says
		g.proxy.DenyDestination(g.adminLn.Addr())
		g.proxy.DenyDestination(g.dnsTCP.Addr())
	}
	g.admin = &http.Server{
		Handler:           g.adminMux(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
	if g.cfg.Admin.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(g.cfg.Admin.TLSCert, g.cfg.Admin.TLSKey)
		if err != nil {
			return fmt.Errorf("admin tls: %w", err)
		}
		g.admin.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return nil
}

// ready is nil once the process can serve its role.
func (g *gateway) ready(ctx context.Context) error {
	if !g.indexReady.Load() {
		return errors.New("feed index not loaded")
	}
	if !hasPolicy(g.service) && !g.cfg.FailOpen {
		return errors.New("no policy loaded")
	}
	return nil
}

// start serves every listener in the background.
func (g *gateway) start() {
	if g.proxy != nil {
		g.go_("proxy", func() error { return g.proxy.Serve(g.proxyLn) })
		g.go_("dns", func() error { return g.dns.Serve(g.dnsUDP, g.dnsTCP) })
	}
	ln := g.adminLn
	if g.admin.TLSConfig != nil {
		ln = tls.NewListener(ln, g.admin.TLSConfig)
	}
	g.go_("admin", func() error { return g.admin.Serve(ln) })
	attrs := []any{"role", g.cfg.Role, "admin", g.adminLn.Addr().String()}
	if g.proxy != nil {
		attrs = append(attrs, "proxy", g.proxyLn.Addr().String(), "dns", g.dnsUDP.LocalAddr().String())
	}
	g.log.Info("cordon serving", attrs...)
}

// close drains connections (bounded by ctx), stops background work and
// closes stores.
func (g *gateway) close(ctx context.Context) {
	if g.proxy != nil {
		if err := g.proxy.Shutdown(ctx); err != nil {
			g.log.Warn("proxy shutdown", "err", err)
		}
	} else if g.proxyLn != nil {
		g.proxyLn.Close()
	}
	if g.dns != nil {
		if err := g.dns.Shutdown(ctx); err != nil {
			g.log.Warn("dns shutdown", "err", err)
		}
	} else {
		if g.dnsUDP != nil {
			g.dnsUDP.Close()
		}
		if g.dnsTCP != nil {
			g.dnsTCP.Close()
		}
	}
	if g.admin != nil {
		if err := g.admin.Shutdown(ctx); err != nil {
			g.log.Warn("admin shutdown", "err", err)
		}
	} else if g.adminLn != nil {
		g.adminLn.Close()
	}
	if g.cancel != nil {
		g.cancel()
	}
	g.bg.Wait()
	for i := len(g.closers) - 1; i >= 0; i-- {
		if err := g.closers[i](ctx); err != nil {
			g.log.Warn("close", "err", err)
		}
	}
}

func hasPolicy(s *policies.Service) bool {
	v := s.Current()
	return v != nil && v.Number > 0
}

// pathsAndSchemas keeps the paths and component schemas of an OpenAPI
// fragment (the served document already declares the bearer security
// scheme), so it can be merged with AddOpenAPI.
func pathsAndSchemas(fragment []byte) []byte {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(fragment, &doc); err != nil {
		return fragment // AddOpenAPI reports the error
	}
	out := map[string]any{"paths": doc["paths"]}
	var comps map[string]json.RawMessage
	if json.Unmarshal(doc["components"], &comps) == nil && comps["schemas"] != nil {
		out["components"] = map[string]json.RawMessage{"schemas": comps["schemas"]}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return fragment
	}
	return b
}
