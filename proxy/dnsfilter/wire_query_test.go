package dnsfilter

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/miekg/dns"
)

// FuzzParseQueryFast checks the allocation-free query parser against
// miekg/dns's Unpack: whatever it accepts, Unpack accepts too and gives
// the same message. Seeds: testdata/fuzz/FuzzParseQueryFast (common
// queries, with and without EDNS, and shapes it must leave to Unpack).
func FuzzParseQueryFast(f *testing.F) {
	names := newNameTable()
	var w wireQuery
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < headerLen || b[2]&0x80 != 0 {
			return
		}
		if !parseQueryFast(b, &w, names) {
			return
		}
		want := new(dns.Msg)
		if err := want.Unpack(b); err != nil {
			t.Fatalf("parseQueryFast accepted what Unpack refuses (%v): %x", err, b)
		}
		got := &w.msg
		if got.MsgHdr != want.MsgHdr {
			t.Fatalf("header %+v, Unpack %+v", got.MsgHdr, want.MsgHdr)
		}
		if !reflect.DeepEqual(got.Question, want.Question) {
			t.Fatalf("question %v, Unpack %v", got.Question, want.Question)
		}
		if len(got.Answer)+len(got.Ns) != 0 || len(want.Answer)+len(want.Ns) != 0 {
			t.Fatalf("answer/authority records: %v %v, Unpack %v %v", got.Answer, got.Ns, want.Answer, want.Ns)
		}
		if len(got.Extra) != len(want.Extra) {
			t.Fatalf("%d additional records, Unpack %d", len(got.Extra), len(want.Extra))
		}
		if len(got.Extra) == 1 {
			g, wo := got.Extra[0].(*dns.OPT), want.Extra[0].(*dns.OPT)
			if g.Hdr != wo.Hdr || len(wo.Option) != 0 {
				t.Fatalf("OPT %+v, Unpack %+v", g, wo)
			}
		}
	})
}

// TestParseQueryFastShapes checks which shapes take the fast path (and
// that the seeds exist): the common ones do, the others are left to
// Unpack.
func TestParseQueryFastShapes(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseQueryFast")
	names := newNameTable()
	for _, tt := range []struct {
		seed string
		fast bool
	}{
		{"plain", true}, {"edns_do", true}, {"root", true}, {"underscore", true},
		{"cookie", false}, {"escaped", false}, {"two_questions", false}, {"trailing", false}, {"pointer", false},
	} {
		b, err := readSeed(filepath.Join(dir, tt.seed))
		if err != nil {
			t.Fatalf("seed %s: %v", tt.seed, err)
		}
		var w wireQuery
		if got := parseQueryFast(b, &w, names); got != tt.fast {
			t.Errorf("%s: fast path %v, want %v", tt.seed, got, tt.fast)
		}
	}
	// A name asked again is the table's string: no allocation.
	m := new(dns.Msg)
	m.SetQuestion("www.Example.org.", dns.TypeA)
	b, _ := m.Pack()
	var w wireQuery
	parseQueryFast(b, &w, names)
	if n := testing.AllocsPerRun(100, func() { parseQueryFast(b, &w, names) }); n != 0 && !raceEnabled {
		t.Errorf("%v allocations for a name asked before, want 0", n)
	}
	if w.msg.Question[0].Name != "www.Example.org." {
		t.Errorf("name %q, want the case as sent", w.msg.Question[0].Name)
	}
}

// readSeed reads a corpus file of go test -fuzz's format ([]byte("...")).
func readSeed(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b []byte
	var s string
	if _, err := fmt.Sscanf(string(raw), "go test fuzz v1\n[]byte(%q)", &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b = []byte(s)
	return b, nil
}
