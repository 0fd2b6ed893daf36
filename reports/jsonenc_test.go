package reports

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

func TestMarshalEventFastPathActive(t *testing.T) {
	if !fastJSON {
		t.Skip("policies.AccessEvent changed: the access log uses encoding/json until eventFields and appendEvent follow")
	}
	for i, ev := range genEvents(500, time.Now(), 12) {
		checkMarshal(t, i, ev)
	}
}

func checkMarshal(t *testing.T, i int, ev *policies.AccessEvent) {
	t.Helper()
	want, err := json.Marshal(ev)
	if err != nil {
		return
	}
	got, err := marshalEvent(nil, ev)
	if err != nil {
		t.Fatalf("event %d: %v", i, err)
	}
	if !bytes.Equal(got, append(want, '\n')) {
		t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
	}
}

// FuzzMarshalEvent checks the hand-written encoder against encoding/json
// on arbitrary strings and numbers.
func FuzzMarshalEvent(f *testing.F) {
	f.Add("alice", "a.example", "/x?<y>&z", "fe80::1%eth0", "grp\u2028", "\xff\x00\"\\", int64(3), int64(-1), true, int64(1700000000123456789))
	f.Add("", "", "", "", "", "", int64(0), int64(0), false, int64(0))
	f.Fuzz(func(t *testing.T, user, host, path, ip, group, reason string, n1, n2 int64, mon bool, ns int64) {
		if !fastJSON {
			t.Skip()
		}
		addr, _ := netip.ParseAddr(ip)
		ev := &policies.AccessEvent{
			Time: time.Unix(0, ns).In(time.FixedZone("x", int(n1%50000))), ID: reason, Proto: "https", User: user,
			Groups: []string{group, user}, Location: path, ClientIP: addr, Method: reason, Host: host, Path: path,
			Categories: []string{host}, Threats: nil, Country: group, Action: user, RuleAction: group,
			Monitor: mon, RuleID: reason, PolicyVersion: n1, Reason: reason, Status: int(n2),
			BytesUp: n1, BytesDown: n2, Latency: time.Duration(n2), Upstream: time.Duration(n1),
		}
		checkMarshal(t, 0, ev)
	})
}
