package policies

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"go.yaml.in/yaml/v3"
)

func TestConfig(t *testing.T) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader([]byte("trusted_networks: [10.0.0.0/8, 192.0.2.7]\nauth_cache_ttl: 30s\nrecent_events: 500\n")))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	ec, err := c.EngineConfig(nil, nil)
	if err != nil || len(ec.TrustedNetworks) != 2 || ec.TrustedNetworks[1].Bits() != 32 || ec.AuthCacheTTL.Seconds() != 30 {
		t.Errorf("EngineConfig = %+v, %v", ec, err)
	}
	if ec, _ := Defaults().EngineConfig(nil, nil); len(ec.TrustedNetworks) != len(DefaultTrustedNetworks()) {
		t.Errorf("default trusted networks = %v", ec.TrustedNetworks)
	}
	if ec, _ := (Config{TrustedNetworks: []string{}}).EngineConfig(nil, nil); len(ec.TrustedNetworks) != 0 || ec.TrustedNetworks == nil {
		t.Errorf("empty trusted_networks = %v, want none", ec.TrustedNetworks)
	}
	bad := Config{TrustedNetworks: []string{"10.0.0.1/8", "x"}, PolicyFile: t.TempDir(), MaxBodyBytes: -1}
	err = bad.Validate()
	for _, want := range []string{"trusted_networks[0]: bad CIDR", "trusted_networks[1]: bad CIDR", "policy_file:", "is a directory", "max_body_bytes"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestApplyFile(t *testing.T) {
	s, e, _ := newFileService(t)
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(basePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := s.ApplyFile(t.Context(), path, "")
	if err != nil || v.Number != 1 || v.Source != SourceFile || e.PolicyVersion() != 1 {
		t.Fatalf("ApplyFile = %+v, %v", v, err)
	}
	if v, err := s.ApplyFile(t.Context(), path, ""); err != nil || v.Number != 1 {
		t.Fatalf("ApplyFile(unchanged) = %+v, %v; want version 1 again", v, err)
	}
	if err := os.WriteFile(path, []byte("rules:\n  - id: a\n    categories: [nope]\n    action: block\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = s.ApplyFile(t.Context(), path, "")
	if !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("ApplyFile(invalid) = %v, want an invalid-policy error naming line 3", err)
	}
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	st, err := OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	e := NewEngine(EngineConfig{Logger: log, Registerer: reg})
	s, err := NewService(t.Context(), ServiceConfig{Store: st, Engine: e, Logger: log, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewAPI(APIConfig{Service: s, Logger: log, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), admin, mustParse(t, basePolicy), "x"); err != nil {
		t.Fatal(err)
	}
	r := Request{Host: "a.example"}
	e.Check(&r)
	probs, err := promtest.GatherAndLint(reg)
	if err != nil || len(probs) > 0 {
		t.Errorf("metric lint: %v %v", probs, err)
	}
	if got := promtest.ToFloat64(s.mChanges.WithLabelValues("api")); got != 1 {
		t.Errorf("changes_total{source=api} = %v, want 1", got)
	}
}
