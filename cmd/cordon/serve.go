package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// serveFlags are the command-line overrides of the config file.
type serveFlags struct {
	config, dataDir, redis, role, name, proxyListen, dnsListen, adminListen, logLevel string
	checkConfig                                                                       bool
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "cordon serve [--config cordon.yaml] [flags]", stderr)
	var f serveFlags
	fs.StringVar(&f.config, "config", "", "YAML config file (every key optional; see deploy/cordon.yaml)")
	fs.StringVar(&f.dataDir, "data-dir", "", "data directory (default ./cordon-data)")
	fs.StringVar(&f.redis, "redis", "", "Redis URL for shared state, e.g. redis://127.0.0.1:6379/0 (default: embedded state)")
	fs.StringVar(&f.role, "role", "", "all, edge (proxy + DNS) or control (admin API, feed sync, reports) (default all)")
	fs.StringVar(&f.name, "name", "", "this edge's name in the edge registry and in staged rollouts (default the hostname)")
	fs.StringVar(&f.proxyListen, "proxy-listen", "", "HTTP/HTTPS proxy address (default :3128)")
	fs.StringVar(&f.dnsListen, "dns-listen", "", "DNS filter UDP and TCP address (default :5353)")
	fs.StringVar(&f.adminListen, "admin-listen", "", "admin API, PAC, DoH, reports and metrics address (default 127.0.0.1:8080)")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.BoolVar(&f.checkConfig, "check-config", false, "load and validate the configuration, print every problem, and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("serve: unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	if f.checkConfig {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	logger := newLogger(cfg.Log, stderr)
	applyGCPercent()
	applyMemoryLimit(logger)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		g, err := newGateway(ctx, cfg, logger)
		if err != nil {
			return err
		}
		g.start()
		select {
		case <-ctx.Done():
			logger.Info("shutting down: draining connections")
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			g.close(sctx)
			cancel()
			return nil
		case <-hup:
			next, err := f.load()
			if err != nil {
				logger.Error("reload refused: the running configuration stays", "err", err)
				// keep serving; wait for the next signal
				select {
				case <-ctx.Done():
					sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					g.close(sctx)
					cancel()
					return nil
				case <-hup:
				}
				next = cfg
			}
			logger.Info("reloading configuration")
			sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			g.close(sctx)
			cancel()
			cfg = next
		}
	}
}

// defaultName is the hostname, or "cordon" when it cannot be read.
func defaultName() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "cordon"
}

// load builds the configuration: defaults, then the file, then flags.
func (f serveFlags) load() (Config, error) {
	cfg := defaultConfig()
	if f.config != "" {
		if err := loadConfig(f.config, &cfg); err != nil {
			return cfg, err
		}
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.DataDir, f.dataDir)
	set(&cfg.Redis.URL, f.redis)
	set(&cfg.Role, f.role)
	set(&cfg.Name, f.name)
	set(&cfg.Proxy.Listen, f.proxyListen)
	set(&cfg.DNS.Listen, f.dnsListen)
	set(&cfg.Admin.Listen, f.adminListen)
	set(&cfg.Log.Level, f.logLevel)
	if f.redis != "" {
		cfg.Redis.Addrs = nil
	}
	cfg.applyDataDir()
	if cfg.Name == "" {
		cfg.Name = defaultName()
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return cfg, nil
}
