package dnsfilter

import (
	"path/filepath"
	"testing"

	"github.com/cordon-gw/cordon/reports"
)

// BenchmarkCacheHitEvent is BenchmarkCacheHit/answer with the access event
// going into a real reports pipeline (aggregates in a local store, the
// JSON access log on), as `cordon serve` runs it: the event path's share
// of a query's CPU.
func BenchmarkCacheHitEvent(b *testing.B) {
	s := benchServer(b)
	dir := b.TempDir()
	cfg := reports.Defaults()
	cfg.Dir = dir
	cfg.AccessLog.Path = filepath.Join(dir, "access.log")
	store, err := reports.OpenLocal(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	p, err := reports.New(cfg, reports.Deps{Store: store})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(b.Context())
	s.events = p
	cacheHitLoop(b, s, "www.example.org")
}
