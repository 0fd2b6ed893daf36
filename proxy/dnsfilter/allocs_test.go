package dnsfilter

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// TestServeAllocations holds the serve path to its budget: a cached
// allowed answer and a block answer allocate nothing in the filter; a
// name in mixed case (DNS 0x20) costs one allocation, its lower-case form.
func TestServeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	e := newEnv(t, "nxdomain", func(c *Config) { c.RateLimit.Disabled = true })
	e.f.srv.events = nil // the sink is the reports pipeline's budget, not ours
	client := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		name, qname string
		want        float64
	}{
		{"cached allowed", "allowed.test.", 0},
		{"cached allowed, 0x20 case", "AlLoWeD.test.", 1},
		{"cached CNAME chain", "alias.test.", 0},
		{"blocked", "www.bad.test.", 0},
	} {
		m := new(dns.Msg)
		m.SetQuestion(tt.qname, dns.TypeA)
		m.SetEdns0(1232, false)
		serveOnce(e.f.srv, m, client) // fill the cache
		if n := testing.AllocsPerRun(200, func() { serveOnce(e.f.srv, m, client) }); n != tt.want {
			t.Errorf("%s: %v allocations per query, want %v", tt.name, n, tt.want)
		}
	}
}
