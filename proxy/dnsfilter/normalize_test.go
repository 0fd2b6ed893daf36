package dnsfilter

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/cordon-gw/cordon/categorizer"
)

// FuzzNormalizeHostAgrees: for every query name the wire format carries,
// the filter's cheap normalization equals categorizer.CanonicalHost (the
// one the proxy and the lookup API use) whenever that accepts the name;
// the names it refuses (empty label, label over 63 bytes, name over 253)
// cannot be carried at all. Names with escaped bytes are no host names
// and are decided on as they come.
func FuzzNormalizeHostAgrees(f *testing.F) {
	for _, s := range []string{
		"WWW.Example.COM.", "xn--bcher-kva.example.", "_dmarc.example.", "a\\032b.example.", "1.2.0.192.in-addr.arpa.",
		strings.Repeat("x", 63) + ".example.", strings.Repeat("abcdefgh.", 27) + "example.com.",
		strings.Repeat("x", 64) + ".example.", "a..b.", ".",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		wire, err := m.Pack()
		if err != nil {
			return // not a name the wire carries
		}
		var got dns.Msg
		if err := got.Unpack(wire); err != nil || len(got.Question) != 1 {
			return // packs but does not unpack (over 255 octets): FORMERR
		}
		qn := got.Question[0].Name
		want, err := categorizer.CanonicalHost(qn)
		if err != nil {
			if len(strings.TrimSuffix(qn, ".")) > 253 && !strings.Contains(qn, "\\") {
				t.Fatalf("the wire carried %q (%d bytes), longer than a host name", qn, len(qn))
			}
			return
		}
		if h := normalizeHost(qn); h != want {
			t.Fatalf("normalizeHost(%q) = %q, CanonicalHost = %q", qn, h, want)
		}
	})
}
