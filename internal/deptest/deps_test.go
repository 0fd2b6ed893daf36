package deptest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/cordon-gw/cordon/"

// forbidden lists, per room, the Cordon packages it must not depend on
// (directly or through another package), each with the reason.
var forbidden = []struct {
	room, dep, why string
}{
	{"categorizer/...", "policies", "the categorizer knows destinations, never rules or users"},
	{"categorizer/...", "proxy", "the categorizer is a leaf below every adapter"},
	{"categorizer/...", "reports", "the categorizer is a leaf below every adapter"},
	{"policies/...", "proxy", "policies speak no wire protocol: adapters call Engine, not the reverse"},
	{"policies/...", "reports", "policies hand events to reports only through interfaces cmd wires"},
	{"proxy", "proxy/dnsfilter", "the HTTP proxy and the DNS filter never import each other"},
	{"proxy", "reports", "adapters reach reports only through the EventSink they declare"},
	{"proxy/dnsfilter", "reports", "adapters reach reports only through the EventSink they declare"},
	{"reports/...", "proxy", "reports take events, not adapters"},
	{"reports/...", "categorizer/redisstore", "reports own their storage"},
	{"loadtest/...", "categorizer", "the load generator speaks the wire, not our types"},
	{"loadtest/...", "policies", "the load generator speaks the wire, not our types"},
	{"loadtest/...", "proxy", "the load generator speaks the wire, not our types"},
	{"loadtest/...", "reports", "the load generator speaks the wire, not our types"},
}

func deps(t *testing.T, pattern string) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps=false", "-f", "{{.ImportPath}}:{{join .Deps \" \"}}", mod+pattern).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", pattern, err, out)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, list, _ := strings.Cut(line, ":")
		m[pkg] = strings.Fields(list)
	}
	return m
}

func TestRoomsImportOneWay(t *testing.T) {
	for _, f := range forbidden {
		for pkg, ds := range deps(t, f.room) {
			for _, d := range ds {
				if d == mod+f.dep || strings.HasPrefix(d, mod+f.dep+"/") {
					t.Errorf("%s depends on %s: %s", pkg, d, f.why)
				}
			}
		}
	}
}

// TestNoPackageNamedDNS: a package named dns would shadow miekg/dns.
func TestNoPackageNamedDNS(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{.Name}}", mod+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasSuffix(line, " dns") {
			t.Errorf("package %s is named dns", line)
		}
	}
}
