package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/proxy"
	"github.com/cordon-gw/cordon/proxy/dnsfilter"
	"github.com/cordon-gw/cordon/reports"
)

// Config is the one YAML file of `cordon serve --config FILE`. Every key is
// optional: the zero file is the embedded default (see deploy/cordon.yaml for
// every key with its default).
type Config struct {
	// DataDir holds local state: snapshots, policy versions, audit, reports,
	// the generated admin token. Default "./cordon-data" (flag --data-dir).
	DataDir string `yaml:"data_dir"`
	// Role is what this process runs: "all" (default), "edge" (proxy and
	// DNS filter) or "control" (admin API, feed sync, reports).
	Role string `yaml:"role"`
	// Name identifies this process in the edge registry (GET
	// /api/v1/edges) and in staged rollouts that name edges. Default the
	// hostname (flag --name).
	Name string `yaml:"name"`
	// FailOpen lets an edge that has neither a cached nor a shared feed
	// snapshot and policy serve traffic with an empty index and the default
	// policy. Default false: such an edge refuses to start (fail closed).
	FailOpen bool `yaml:"fail_open"`

	Log    LogConfig    `yaml:"log"`
	Redis  RedisConfig  `yaml:"redis"`
	Admin  AdminConfig  `yaml:"admin"`
	Access AccessConfig `yaml:"access"`
	Policy PolicyConfig `yaml:"policy"`

	// Categorizer declares the feeds (default: the bundled lists), their
	// refresh, the GeoIP database and the newly_seen category.
	Categorizer categorizer.Config `yaml:"categorizer"`
	Proxy       proxy.Config       `yaml:"proxy"`
	DNS         dnsfilter.Config   `yaml:"dns"`
	Reports     reports.Config     `yaml:"reports"`
}

// RedisConfig turns on shared state. Either URL (single node) or Addrs
// (Sentinel when MasterName is set, Cluster when several addresses are given
// without MasterName). Default: none, embedded state.
type RedisConfig struct {
	// URL is redis://[user:password@]host:port/db or rediss://… (flag --redis).
	URL string `yaml:"url"`
	// Addrs are host:port seeds for Sentinel or Cluster.
	Addrs []string `yaml:"addrs"`
	// MasterName selects Sentinel mode.
	MasterName string `yaml:"master_name"`
	Username   string `yaml:"username"`
	// Password; CORDON_REDIS_PASSWORD overrides it.
	Password string `yaml:"password"`
	DB       int    `yaml:"db"`
	// KeyPrefix namespaces every key. Default "cordon:".
	KeyPrefix string `yaml:"key_prefix"`
}

// Enabled reports whether Redis is configured.
func (c RedisConfig) Enabled() bool { return c.URL != "" || len(c.Addrs) > 0 }

// AdminConfig is the admin listener: API, PAC/WPAD, DoH, reports, metrics.
type AdminConfig struct {
	// Listen is the address. Default "127.0.0.1:8080" (flag --admin-listen).
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey turn on HTTPS (needed for DoH by browsers).
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Pprof exposes /debug/pprof/ to admin tokens. Default false.
	Pprof bool `yaml:"pprof"`
}

// AccessConfig says who may use the gateway without authenticating.
type AccessConfig struct {
	// TrustedNetworks are served without authentication. Default: loopback
	// and the private ranges (10/8, 172.16/12, 192.168/16, fc00::/7).
	// An explicit empty list trusts nobody.
	TrustedNetworks *[]string `yaml:"trusted_networks"`
}

// PolicyConfig seeds the policy.
type PolicyConfig struct {
	// File is a policy YAML applied as a new version at start when it
	// differs from the current one (policy as code). Default none: the
	// stored policy, or the built-in starter policy on first start.
	File string `yaml:"file"`
}

func defaultConfig() Config {
	return Config{
		DataDir:     "./cordon-data",
		Role:        "all",
		Admin:       AdminConfig{Listen: "127.0.0.1:8080"},
		Proxy:       proxy.Defaults(),
		Reports:     reports.Defaults(),
		Categorizer: categorizer.Defaults(),
		Redis:       RedisConfig{KeyPrefix: "cordon:"},
	}
}

// loadConfig decodes a YAML file strictly (unknown keys are errors) over
// the defaults.
func loadConfig(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return decodeConfig(path, data, cfg)
}

func decodeConfig(name string, data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", name, err)
	}
	return nil
}

// Validate collects every problem of the composed configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir: must not be empty"))
	}
	switch c.Role {
	case "all", "edge", "control":
	default:
		errs = append(errs, fmt.Errorf("role: %q is not all, edge or control", c.Role))
	}
	if len(c.Name) > 64 || strings.ContainsAny(c.Name, " \t\n/") {
		errs = append(errs, fmt.Errorf("name: %q: want at most 64 characters without spaces or slashes", c.Name))
	}
	if err := c.Log.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Redis.URL != "" && len(c.Redis.Addrs) > 0 {
		errs = append(errs, errors.New("redis: set url or addrs, not both"))
	}
	if c.Role == "edge" && !c.Redis.Enabled() {
		errs = append(errs, errors.New("role: an edge needs redis (the control process publishes policy and feeds there)"))
	}
	if _, _, err := net.SplitHostPort(c.Admin.Listen); err != nil {
		errs = append(errs, fmt.Errorf("admin.listen: %w", err))
	}
	if (c.Admin.TLSCert == "") != (c.Admin.TLSKey == "") {
		errs = append(errs, errors.New("admin: tls_cert and tls_key go together"))
	}
	if _, err := c.trustedNetworks(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Categorizer.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("categorizer: %w", err))
	}
	if err := c.Proxy.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("proxy: %w", err))
	}
	if err := c.DNS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("dns: %w", err))
	}
	if err := c.Reports.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("reports: %w", err))
	}
	return joinErrs(errs)
}

// trustedNetworks parses access.trusted_networks; nil means the default.
func (c *Config) trustedNetworks() ([]netip.Prefix, error) {
	if c.Access.TrustedNetworks == nil {
		return nil, nil
	}
	out := make([]netip.Prefix, 0, len(*c.Access.TrustedNetworks))
	var errs []error
	for i, s := range *c.Access.TrustedNetworks {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, aerr := netip.ParseAddr(s); aerr == nil {
				p, err = a.Prefix(a.BitLen())
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("access.trusted_networks[%d]: %q is not a CIDR or address", i, s))
			continue
		}
		out = append(out, p.Masked())
	}
	return out, joinErrs(errs)
}

func (c *Config) path(elem ...string) string {
	return filepath.Join(append([]string{c.DataDir}, elem...)...)
}

func joinErrs(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(errs...)
}

// applyDataDir points the rooms' local paths that were left at their
// defaults into the data directory.
func (c *Config) applyDataDir() {
	if c.Reports.Dir == "" || c.Reports.Dir == reports.Defaults().Dir {
		c.Reports.Dir = c.path("reports")
	}
	if p := c.Reports.AccessLog.Path; p == "" || p == reports.Defaults().AccessLog.Path {
		c.Reports.AccessLog.Path = filepath.Join(c.Reports.Dir, "access.log")
	}
	if d := c.Proxy.TLSInspection.CADir; d == "" || d == proxy.Defaults().TLSInspection.CADir {
		c.Proxy.TLSInspection.CADir = c.path("ca")
	}
}
