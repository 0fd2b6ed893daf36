package reports

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestConfigYAML decodes a config the way cmd does (defaults, then strict
// YAML over them, then Validate).
func TestConfigYAML(t *testing.T) {
	doc := `
dir: /var/lib/cordon/reports
queue_size: 1024
flush_interval: 2s
retention: 168h
buffer_max_fields: 50000
compact_interval: 1m
max_domains_per_row: 200
top_n: 20
access_log:
  enabled: false
  max_size_mb: 10
  max_age: 1h
  max_files: 3
syslog:
  address: siem.example.net:514
  network: tcp
  facility: 13
privacy:
  pseudonymize_users: true
  pseudonym_key: 0123456789abcdef0123
  drop_paths: true
`
	cfg := Defaults()
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if cfg.FlushInterval != 2*time.Second || cfg.Retention != 168*time.Hour || cfg.AccessLog.Enabled ||
		cfg.Syslog.Network != "tcp" || !cfg.Privacy.PseudonymizeUsers || cfg.Privacy.PseudonymKey != "0123456789abcdef0123" ||
		cfg.AccessLog.MaxAge != time.Hour || cfg.MaxDomainsPerRow != 200 {
		t.Errorf("decoded %+v", cfg)
	}
	// The key never prints.
	var out bytes.Buffer
	if err := yaml.NewEncoder(&out).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "0123456789abcdef0123") {
		t.Errorf("encoded config shows the pseudonym key:\n%s", out.String())
	}
	dec = yaml.NewDecoder(strings.NewReader("flush_intervall: 1s\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err == nil {
		t.Error("unknown key decoded without error")
	}
}
