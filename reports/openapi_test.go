package reports

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestOpenAPIFragment checks the fragment the lead merges into
// /api/v1/openapi.json: valid JSON, every API route documented, every
// $ref resolvable.
func TestOpenAPIFragment(t *testing.T) {
	b, err := os.ReadFile("openapi-fragment.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi-fragment.json: %v", err)
	}
	h := NewHandler(nil, nil)
	for _, rt := range h.APIRoutes() {
		ops, ok := doc.Paths[rt.Pattern]
		if !ok {
			t.Errorf("route %s %s not in the fragment", rt.Method, rt.Pattern)
			continue
		}
		op, ok := ops[strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("route %s %s: no %s operation", rt.Method, rt.Pattern, strings.ToLower(rt.Method))
			continue
		}
		var fields struct {
			Perm string `json:"x-permission"`
		}
		if err := json.Unmarshal(op, &fields); err != nil || fields.Perm != "read" {
			t.Errorf("route %s %s: x-permission %q, want read (policies.PermRead)", rt.Method, rt.Pattern, fields.Perm)
		}
	}
	if len(doc.Paths) != len(h.APIRoutes()) {
		t.Errorf("fragment has %d paths, routes %d", len(doc.Paths), len(h.APIRoutes()))
	}
	const prefix = `"#/components/schemas/`
	s := string(b)
	for i := strings.Index(s, prefix); i >= 0; i = strings.Index(s, prefix) {
		s = s[i+len(prefix):]
		name := s[:strings.IndexByte(s, '"')]
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("$ref to missing schema %q", name)
		}
	}
}

// TestOpenAPIReportSchema checks the Report schema names exactly the JSON
// fields Report has.
func TestOpenAPIReportSchema(t *testing.T) {
	b, err := os.ReadFile("openapi-fragment.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]any{
		"Report":               Report{Subject: "x", TopUsers: []Count{{}}, TopUsersByBlocks: []Count{{}}, TopGroups: []Count{{}}, TopLocations: []Count{{}}},
		"ReportCount":          Count{},
		"ReportBlockedAttempt": BlockedAttempt{Category: "c", Rule: "r"},
		"ReportHour":           HourPoint{},
		"ReportError":          apiError{ID: "x"},
	} {
		raw, _ := json.Marshal(v)
		var fields map[string]json.RawMessage
		_ = json.Unmarshal(raw, &fields)
		props := doc.Components.Schemas[name].Properties
		for f := range fields {
			if _, ok := props[f]; !ok {
				t.Errorf("schema %s lacks field %q", name, f)
			}
		}
		for p := range props {
			if _, ok := fields[p]; !ok {
				t.Errorf("schema %s documents %q, which %T does not have", name, p, v)
			}
		}
	}
}
