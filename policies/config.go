package policies

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is the policies section of cordon.yaml. Zero values mean the
// documented defaults.
type Config struct {
	// TrustedNetworks are client networks served without authentication
	// (CIDRs or addresses). Absent: loopback, 10/8, 172.16/12,
	// 192.168/16, fc00::/7. An empty list trusts none (only policy
	// locations and credentials identify clients).
	TrustedNetworks []string `yaml:"trusted_networks"`
	// PolicyFile, when set, is loaded at start and stored as a new
	// version (source "file") if it differs from the current one. Empty:
	// serve the stored policy (none stored: allow everything).
	PolicyFile string `yaml:"policy_file"`
	// AuthCacheTTL is how long a verified proxy password is remembered.
	// Default 1m; negative ("-1s") disables the cache.
	AuthCacheTTL Duration `yaml:"auth_cache_ttl"`
	// RecentEvents is how many recent access events impact previews
	// replay. Default 10000; negative disables.
	RecentEvents int `yaml:"recent_events"`
	// MaxBodyBytes bounds admin API request bodies. Default 8 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
}

// Defaults returns the configuration used when nothing is set.
func Defaults() Config {
	return Config{
		AuthCacheTTL: Duration(DefaultAuthCacheTTL),
		RecentEvents: DefaultRecentEvents,
		MaxBodyBytes: DefaultMaxBodyBytes,
	}
}

// Validate reports every problem, naming the field.
func (c Config) Validate() error {
	var errs []error
	for i, s := range c.TrustedNetworks {
		if _, err := parseCIDR(s); err != nil {
			errs = append(errs, fmt.Errorf("policies: trusted_networks[%d]: %v", i, err))
		}
	}
	if c.PolicyFile != "" {
		if st, err := os.Stat(c.PolicyFile); err != nil {
			errs = append(errs, fmt.Errorf("policies: policy_file: %v", err))
		} else if st.IsDir() {
			errs = append(errs, fmt.Errorf("policies: policy_file: %s is a directory, want a YAML file", c.PolicyFile))
		}
	}
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("policies: max_body_bytes: %d: want a positive size (default %d)", c.MaxBodyBytes, DefaultMaxBodyBytes))
	}
	return errors.Join(errs...)
}

// Trusted returns the trusted networks as prefixes (nil: the defaults).
func (c Config) Trusted() ([]netip.Prefix, error) {
	if c.TrustedNetworks == nil {
		return nil, nil
	}
	out := make([]netip.Prefix, 0, len(c.TrustedNetworks))
	for i, s := range c.TrustedNetworks {
		p, err := parseCIDR(s)
		if err != nil {
			return nil, fmt.Errorf("policies: trusted_networks[%d]: %v", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// EngineConfig turns c into the Engine's configuration.
func (c Config) EngineConfig(log *slog.Logger, reg prometheus.Registerer) (EngineConfig, error) {
	nets, err := c.Trusted()
	if err != nil {
		return EngineConfig{}, err
	}
	if nets == nil {
		nets = DefaultTrustedNetworks()
	}
	return EngineConfig{TrustedNetworks: nets, AuthCacheTTL: time.Duration(c.AuthCacheTTL), Logger: log, Registerer: reg}, nil
}

// ApplyFile loads a policy file and stores it as a new version (source
// "file", audited with author) when it differs from the current policy.
// The file is validated like any other change.
func (s *Service) ApplyFile(ctx context.Context, path, author string) (*Version, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policies: policy file: %w", err)
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("policies: policy file %s: %w", path, err)
	}
	if author == "" {
		author = "file"
	}
	v, err := s.Put(ctx, Actor{Name: author, Role: RoleAdmin, Source: SourceFile}, p, "loaded from "+path)
	if err != nil {
		return nil, fmt.Errorf("policies: policy file %s: %w", path, err)
	}
	return v, nil
}
