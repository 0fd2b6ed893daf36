package policies

import (
	"encoding/json"
	"github.com/cordon-gw/cordon/categorizer"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary documents to the policy parser. Properties:
// no panic; a document that parses and validates compiles; its YAML
// encoding parses back to the same policy (a fixpoint).
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(testPolicy))
	f.Add([]byte("rules:\n  - id: a\n    action: block\n    categoriez: [x]\n"))
	f.Add([]byte("settings: {warn_ttl: 5m, default_action: warn}\n"))
	tb := newTable()
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		if err := Validate(p, tb); err != nil {
			return
		}
		c, err := Compile(p, 1, tb)
		if err != nil {
			t.Fatalf("valid policy does not compile: %v\n%s", err, data)
		}
		r := Request{Host: "www.example.com", Path: "/x"}
		var v = tb.Lookup(r.Host, "", r.DestIP)
		c.Decide(&r, &v)
		p2, err := Parse(p.YAML())
		if err != nil {
			t.Fatalf("re-parse of encoded policy: %v\n%s", err, p.YAML())
		}
		if !jsonEqual(p, p2) {
			t.Fatalf("round trip changed the policy:\n%+v\n%+v", p, p2)
		}
	})
}

func TestExamplePolicy(t *testing.T) {
	b, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	// The example names only categories of the bundled default feeds.
	ix, err := categorizer.BuildBundled(1)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(p, ix); err != nil {
		t.Fatal(err)
	}
	if got := p.BypassHosts(); len(got) != 1 || got[0] != "updates.example.com" {
		t.Errorf("BypassHosts() = %v", got)
	}
	if _, ok := verifyPasswordFor(p, "alice", "correct horse battery staple"); !ok {
		t.Error("example password hash does not verify")
	}
}

func verifyPasswordFor(p *Policy, user, pw string) (string, bool) {
	for _, u := range p.Users {
		if u.Name == user {
			return u.PasswordHash, verifyPassword(u.PasswordHash, pw)
		}
	}
	return "", false
}

// FuzzParseJSON feeds arbitrary bodies to the strict JSON policy decoder
// of the admin API. Properties: no panic; a decoded policy re-encodes to
// JSON that decodes to the same policy.
func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"rules": [{"id": "a", "categories": ["news"], "action": "block"}]}`))
	f.Add([]byte(`{"settings": {"warn_ttl": "5m"}, "users": [{"name": "a", "groups": ["g"]}]}`))
	f.Add([]byte(`{"rules": [{"id": "a", "action": "block", "nope": 1}]}`))
	f.Add([]byte(`{"settings": {"warn_ttl": 5}}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseJSON(data)
		if err != nil {
			return
		}
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		p2, err := ParseJSON(b)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		if !jsonEqual(p, p2) {
			t.Fatalf("round trip changed the policy: %s", b)
		}
	})
}
