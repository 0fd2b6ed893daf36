package policies

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzPatch feeds arbitrary JSON to the change-request patch decoder and
// applies what decodes to a real policy. Properties: no panic; a failed
// Apply leaves the policy untouched (nothing half-applied); a successful
// one is repeatable (same input, same result) and a patch that adds only
// entries can be rebased onto the policy it produced without conflicts.
func FuzzPatch(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/patches/*.json")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"bypass": {"add": ["payroll.example"]}}`))
	f.Add([]byte(`{"rules": {"delete": ["nope"]}}`))
	base, err := Parse([]byte(basePolicy))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var pt Patch
		if decodeStrictJSON(strings.NewReader(string(data)), &pt) != nil {
			return
		}
		before, _ := json.Marshal(base)
		out, err := pt.Apply(base)
		after, _ := json.Marshal(base)
		if string(before) != string(after) {
			t.Fatalf("Apply changed its input policy (err %v)", err)
		}
		if err != nil {
			return
		}
		again, err := pt.Apply(base)
		if err != nil || !jsonEqual(out, again) {
			t.Fatalf("Apply is not repeatable: %v", err)
		}
		if _, conflicts, err := rebasePatch(&pt, base, base); err != nil || len(conflicts) > 0 {
			t.Fatalf("rebase onto the unchanged base: %v %v", conflicts, err)
		}
	})
}
