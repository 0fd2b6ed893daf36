package proxy

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func decodeConfig(t *testing.T, b []byte) Config {
	t.Helper()
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	if d.Listen != ":3128" || d.ReadHeaderTimeout != 10*time.Second || d.XForwardedFor != "strip" ||
		d.ConnectWarn != "block" || len(d.AllowPrivateDestinations) != 0 || d.TLSInspection.Enabled {
		t.Errorf("Defaults() = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Defaults().Validate() = %v", err)
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config.Validate() = %v", err)
	}
}

// TestConfigFileMatchesDefaults: testdata/config.yaml documents every key
// with its default; it decodes strictly and equals Defaults() apart from
// the example location.
func TestConfigFileMatchesDefaults(t *testing.T) {
	b, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := decodeConfig(t, b)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	c.PAC.Locations = nil
	got, want := c.withDefaults(), Defaults()
	// Empty lists and maps in the file mean the same as absent ones.
	got.AllowPrivateDestinations, got.ResolveOverrides = nil, nil
	got.PAC = PACConfig{}
	got.TLSInspection.DoNotInspectDomains, got.TLSInspection.PinningBypass, got.TLSInspection.UpstreamCAFiles = nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config.yaml differs from Defaults():\n got %+v\nwant %+v", got, want)
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	c := decodeConfig(t, []byte(`
listen: "nonsense"
read_header_timeout: -1s
max_header_bytes: 10
max_conns_per_client: -1
via: "two words"
x_forwarded_for: sometimes
connect_warn: maybe
connect_ports: [70000]
allow_private_destinations: ["10.0.0.0/33"]
resolve_overrides: {"origin.test": "not-an-ip"}
hosts_file: /does/not/exist
page_templates: {block: /does/not/exist.html}
pac:
  edges: ["no-port"]
  bypass: ["bad\"quote"]
tls_inspection:
  enabled: true
  ca_dir: /does/not/exist
  leaf_cache_size: -5
`))
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	for _, field := range []string{
		"listen", "read_header_timeout", "max_header_bytes", "max_conns_per_client", "via", "x_forwarded_for",
		"connect_warn", "connect_ports[0]", "allow_private_destinations[0]", "resolve_overrides.origin.test",
		"hosts_file", "page_templates.block", "pac.edges[0]", "pac.bypass[0]", "tls_inspection.ca_dir",
		"tls_inspection.leaf_cache_size",
	} {
		if !strings.Contains(err.Error(), "proxy: "+field+":") {
			t.Errorf("Validate error does not name %s:\n%v", field, err)
		}
	}
}

func TestPageTemplateOverride(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "block.html")
	if err := os.WriteFile(good, []byte(`<html><head>{{template "style"}}</head><body>ACME blocks {{.Host}} ({{.RuleID}}, {{.RequestID}})</body></html>`), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOpt{cfg: Config{PageTemplates: PageTemplates{Block: good}}})
	resp, body := get(t, h.client(nil), h.httpURL("casino.test", "/"))
	if resp.StatusCode != 403 || !strings.Contains(body, "ACME blocks casino.test (block-gambling, "+resp.Header.Get("X-Cordon-Request-Id")+")") {
		t.Errorf("override block page = %d %q", resp.StatusCode, body)
	}
	bad := filepath.Join(dir, "bad.html")
	if err := os.WriteFile(bad, []byte(`{{.Unclosed`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Config{PageTemplates: PageTemplates{Warn: bad}}).Validate(); err == nil || !strings.Contains(err.Error(), "page_templates.warn") {
		t.Errorf("Validate(bad template) = %v", err)
	}
}
