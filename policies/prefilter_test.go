package policies

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/categorizer"
)

// decideNaive is the reference: every rule tested in order, no
// prefilter masks.
func (c *Compiled) decideNaive(r *Request, v *categorizer.Verdict) (rule string, monitor string) {
	var buf [maxResolvedGroups]int32
	w := c.resolve(r, &buf)
	var dm [MaxRules / 64]uint64
	if len(c.domains) > 0 && r.Host != "" {
		c.markHost(r.Host, r.Path, &dm, -1)
	}
	for i := range c.rules {
		cr := &c.rules[i]
		if _, ok := c.match(cr, i, r, v, &w, &dm); !ok {
			continue
		}
		if cr.monitor {
			if monitor == "" {
				monitor = cr.id
			}
			continue
		}
		return cr.id, monitor
	}
	return "", monitor
}

func TestDecidePrefilterAgreesWithNaive(t *testing.T) {
	tb := benchTable()
	p := benchPolicy(tb, 300, 2000)
	for i := range p.Rules {
		if i%13 == 0 {
			p.Rules[i].Monitor = true
		}
		if i%17 == 0 {
			p.Rules[i].Threats = []string{"urlhaus"}
		}
		if i%29 == 0 {
			p.Rules[i].Categories = nil
			p.Rules[i].Groups = nil
			p.Rules[i].Monitor = true // would shadow every later rule otherwise
		}
	}
	c, err := Compile(p, 1, tb)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	matched, monitored := 0, 0
	days := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for n := 0; n < 20000; n++ {
		var pr *Principal
		switch rng.IntN(3) {
		case 0:
			pr = c.id.userRecs[rng.IntN(len(c.id.userRecs))].principal
		case 1:
			pr = &Principal{User: "ext", Groups: []string{fmt.Sprintf("g%d", rng.IntN(100))}}
		}
		host := "x.example"
		if rng.IntN(4) == 0 {
			host = fmt.Sprintf("a.d%d-%d.example", rng.IntN(10), rng.IntN(120))
		}
		r := Request{Host: host, Principal: pr, Protocol: Protocol(rng.IntN(3)),
			ClientIP: netip.AddrFrom4([4]byte{10, byte(rng.IntN(25)), 1, 1}),
			Time:     days.Add(time.Duration(rng.IntN(7*24*60)) * time.Minute)}
		if rng.IntN(2) == 0 {
			r.Path = "/admin/x"
		}
		v := categorizer.Verdict{Categories: categorizer.Set(rng.Uint64() & rng.Uint64() & rng.Uint64()), Threats: categorizer.Set(rng.IntN(4))}
		d := c.Decide(&r, &v)
		rule, mon := c.decideNaive(&r, &v)
		gotMon := d.MonitorRuleID
		gotRule := d.RuleID
		if d.Monitor {
			gotMon, gotRule = d.RuleID, ""
			if rule != "" {
				t.Fatalf("request %d: Decide reported monitor %q but rule %q enforces", n, d.RuleID, rule)
			}
		}
		if rule != "" {
			matched++
		}
		if mon != "" {
			monitored++
		}
		if gotRule != rule || gotMon != mon {
			t.Fatalf("request %d (%+v, verdict %+v): Decide rule %q monitor %q, naive rule %q monitor %q", n, r, v, gotRule, gotMon, rule, mon)
		}
	}
	if matched < 500 || monitored < 500 {
		t.Errorf("only %d requests matched an enforcing rule and %d a monitor rule: the test does not exercise Decide", matched, monitored)
	}
}
