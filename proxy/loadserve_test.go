package proxy

import (
	"context"
	"errors"
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
// test policy on a real Engine. CORDON_PROXY_FEEDS lists shared feed
// files (hosts format; "alt-version" files one domain per line) loaded as
// the threat feed "blocklist", which the test policy blocks.
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
		for _, rel := range feeds {
			file, err := os.Open(testutil.SharedData(t, rel))
			if err != nil {
				t.Fatal(err)
			}
			format := categorizer.FormatHosts
			if strings.Contains(rel, "alt-version") {
				format = categorizer.FormatDomains
			}
			st, err := categorizer.Parse(format, rel, file, b.Emit(id))
			file.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %+v", rel, st)
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
