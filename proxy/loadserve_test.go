package proxy

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
)

// TestServeForLoadtest runs the proxy for an external load generator
// (loadtest, BENCHMARKS.md) and is skipped unless CORDON_PROXY_SERVE names
// the listen address. It serves for CORDON_PROXY_SERVE_FOR (default 60s),
// resolving through CORDON_PROXY_HOSTS (default
// ../loadtest/traffic/hosts) and allowing loopback destinations, with the
// test policy on a real Engine. CORDON_PROXY_FEEDS lists feed files
// loaded as the threat feed "blocklist", which the test policy blocks:
// "bundled:<file>" names a bundled default list (categorizer/bundled, in
// its manifest's format), anything else a file (hosts format; one domain
// per line when its path has "alt-version" or "-nl."; ".gz" read
// decompressed).
func TestServeForLoadtest(t *testing.T) {
	addr := os.Getenv("CORDON_PROXY_SERVE")
	if addr == "" {
		t.Skip("set CORDON_PROXY_SERVE=127.0.0.1:3128 to run the proxy for a load generator")
	}
	d := time.Minute
	if v := os.Getenv("CORDON_PROXY_SERVE_FOR"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	hosts := os.Getenv("CORDON_PROXY_HOSTS")
	if hosts == "" {
		hosts = "../loadtest/traffic/hosts"
	}
	cfg := Config{
		Listen:                   addr,
		HostsFile:                hosts,
		AllowPrivateDestinations: []string{"127.0.0.0/8"},
		ConnectPorts:             []int{0},
		MaxConnsPerClient:        100000,
	}
	engine := testEngine(t, nil)
	if feeds := strings.Fields(os.Getenv("CORDON_PROXY_FEEDS")); len(feeds) > 0 {
		b := categorizer.NewBuilder()
		for _, f := range testFeeds {
			id, err := b.AddFeed(f.name, f.cats, f.threat)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range f.domains {
				_ = b.Add(id, categorizer.Entry{Kind: categorizer.KindDomain, Host: d})
			}
		}
		id, err := b.AddFeed("blocklist", []string{"malware"}, true)
		if err != nil {
			t.Fatal(err)
		}
		formats := map[string]categorizer.Format{}
		for _, f := range categorizer.DefaultFeeds() {
			formats[f.Source] = f.Format
		}
		for _, name := range feeds {
			var text []byte
			format := categorizer.FormatHosts
			switch {
			case strings.HasPrefix(name, "bundled:"):
				var ok bool
				if format, ok = formats[name]; !ok {
					t.Fatalf("CORDON_PROXY_FEEDS: no bundled list %q", name)
				}
				text = testutil.Bundled(t, strings.TrimPrefix(name, "bundled:"))
			default:
				var err error
				if text, err = os.ReadFile(name); err != nil {
					t.Fatal(err)
				}
				if strings.HasSuffix(name, ".gz") {
					zr, err := gzip.NewReader(bytes.NewReader(text))
					if err != nil {
						t.Fatal(err)
					}
					if text, err = io.ReadAll(zr); err != nil {
						t.Fatal(err)
					}
				}
				if strings.Contains(name, "alt-version") || strings.Contains(name, "-nl.") {
					format = categorizer.FormatDomains
				}
			}
			st, err := categorizer.Parse(format, name, bytes.NewReader(text), b.Emit(id))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v", name, st)
		}
		ix, err := b.Build(2)
		if err != nil {
			t.Fatal(err)
		}
		if err := engine.SetIndex(ix); err != nil {
			t.Fatal(err)
		}
		t.Logf("index: %d entries", ix.Len())
	}
	srv, err := New(cfg, Deps{
		Engine:     engine,
		Events:     EventSinkFunc(func(ev *policies.AccessEvent) {}),
		Logger:     slog.New(slog.DiscardHandler),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(d)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Fatal(err)
	}
}
