package policies

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Diff is the difference between two policy versions, item by item.
type Diff struct {
	From    int64    `json:"from"`
	To      int64    `json:"to"`
	Changes []Change `json:"changes"`
}

// Change is one added, removed, changed or moved item.
type Change struct {
	// Section is settings, groups, users, locations, lists or rules.
	Section string `json:"section"`
	// Name is the rule id or the item's name ("" for settings).
	Name string `json:"name,omitempty"`
	// Kind is added, removed, changed or moved (a rule whose position
	// among the other rules changed; it may also be changed).
	Kind string `json:"kind"`
	// FromPos and ToPos are 1-based rule positions (rules only).
	FromPos int           `json:"from_position,omitempty"`
	ToPos   int           `json:"to_position,omitempty"`
	Fields  []FieldChange `json:"fields,omitempty"`
}

// FieldChange is one field of a changed item.
type FieldChange struct {
	Field  string `json:"field"`
	Before any    `json:"before,omitempty"`
	After  any    `json:"after,omitempty"`
}

// DiffPolicies compares a (older) and b (newer).
func DiffPolicies(a, b *Policy) []Change {
	var out []Change
	if f := fieldChanges(a.Settings, b.Settings); len(f) > 0 {
		out = append(out, Change{Section: "settings", Kind: "changed", Fields: f})
	}
	out = append(out, diffNamed("groups", a.Groups, b.Groups, func(g Group) string { return g.Name })...)
	out = append(out, diffNamed("users", a.Users, b.Users, func(u User) string { return u.Name })...)
	out = append(out, diffNamed("locations", a.Locations, b.Locations, func(l Location) string { return l.Name })...)
	out = append(out, diffNamed("lists", a.Lists, b.Lists, func(l List) string { return l.Name })...)
	out = append(out, diffRules(a.Rules, b.Rules)...)
	return out
}

func diffNamed[T any](section string, a, b []T, name func(T) string) []Change {
	var out []Change
	old := make(map[string]T, len(a))
	for _, x := range a {
		old[name(x)] = x
	}
	seen := make(map[string]bool, len(b))
	for _, y := range b {
		n := name(y)
		seen[n] = true
		x, ok := old[n]
		switch {
		case !ok:
			out = append(out, Change{Section: section, Name: n, Kind: "added", Fields: fieldChanges(nil, y)})
		case !reflect.DeepEqual(x, y):
			out = append(out, Change{Section: section, Name: n, Kind: "changed", Fields: fieldChanges(x, y)})
		}
	}
	for _, x := range a {
		if n := name(x); !seen[n] {
			out = append(out, Change{Section: section, Name: n, Kind: "removed"})
		}
	}
	return out
}

func diffRules(a, b []Rule) []Change {
	var out []Change
	posA := make(map[string]int, len(a))
	for i, r := range a {
		posA[r.ID] = i
	}
	posB := make(map[string]int, len(b))
	for i, r := range b {
		posB[r.ID] = i
	}
	// Rules in both, in each order; the ones outside a longest common
	// subsequence are the ones that moved.
	var ca, cb []string
	for _, r := range a {
		if _, ok := posB[r.ID]; ok {
			ca = append(ca, r.ID)
		}
	}
	for _, r := range b {
		if _, ok := posA[r.ID]; ok {
			cb = append(cb, r.ID)
		}
	}
	stay := lcs(ca, cb)
	for i, r := range b {
		j, ok := posA[r.ID]
		if !ok {
			out = append(out, Change{Section: "rules", Name: r.ID, Kind: "added", ToPos: i + 1, Fields: fieldChanges(nil, r)})
			continue
		}
		f := fieldChanges(a[j], r)
		switch {
		case !stay[r.ID]:
			out = append(out, Change{Section: "rules", Name: r.ID, Kind: "moved", FromPos: j + 1, ToPos: i + 1, Fields: f})
		case len(f) > 0:
			out = append(out, Change{Section: "rules", Name: r.ID, Kind: "changed", FromPos: j + 1, ToPos: i + 1, Fields: f})
		}
	}
	for j, r := range a {
		if _, ok := posB[r.ID]; !ok {
			out = append(out, Change{Section: "rules", Name: r.ID, Kind: "removed", FromPos: j + 1})
		}
	}
	return out
}

// lcs returns the members of a longest common subsequence of a and b
// (both hold distinct ids). Beyond 4M cells it falls back to keeping the
// ids whose relative rank is the same.
func lcs(a, b []string) map[string]bool {
	keep := make(map[string]bool)
	n, m := len(a), len(b)
	if n*m > 4<<20 {
		for i := range min(n, m) {
			if a[i] == b[i] {
				keep[a[i]] = true
			}
		}
		return keep
	}
	t := make([]uint16, (n+1)*(m+1))
	at := func(i, j int) *uint16 { return &t[i*(m+1)+j] }
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				*at(i, j) = *at(i+1, j+1) + 1
			} else {
				*at(i, j) = max(*at(i+1, j), *at(i, j+1))
			}
		}
	}
	for i, j := 0, 0; i < n && j < m; {
		switch {
		case a[i] == b[j]:
			keep[a[i]] = true
			i++
			j++
		case *at(i+1, j) >= *at(i, j+1):
			i++
		default:
			j++
		}
	}
	return keep
}

// fieldChanges compares two values of the same struct type field by field
// through their JSON form (so field names are the document's).
func fieldChanges(a, b any) []FieldChange {
	ma, mb := toMap(a), toMap(b)
	keys := make([]string, 0, len(ma)+len(mb))
	for k := range ma {
		keys = append(keys, k)
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []FieldChange
	for _, k := range keys {
		if !reflect.DeepEqual(ma[k], mb[k]) {
			out = append(out, FieldChange{Field: k, Before: ma[k], After: mb[k]})
		}
	}
	return out
}

func toMap(v any) map[string]any {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}

// String renders the diff for terminals, one line per change.
func (d *Diff) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "version %d → %d: %d change(s)\n", d.From, d.To, len(d.Changes))
	for _, c := range d.Changes {
		sign := map[string]string{"added": "+", "removed": "-", "changed": "~", "moved": "↕"}[c.Kind]
		name := c.Section
		if c.Name != "" {
			name += " " + c.Name
		}
		pos := ""
		switch {
		case c.FromPos > 0 && c.ToPos > 0 && c.FromPos != c.ToPos:
			pos = fmt.Sprintf(" (position %d → %d)", c.FromPos, c.ToPos)
		case c.ToPos > 0 && c.Kind == "added":
			pos = fmt.Sprintf(" (position %d)", c.ToPos)
		}
		fmt.Fprintf(&b, "%s %s %s%s\n", sign, c.Kind, name, pos)
		if c.Kind == "added" {
			continue
		}
		for _, f := range c.Fields {
			fmt.Fprintf(&b, "    %s: %s → %s\n", f.Field, short(f.Before), short(f.After))
		}
	}
	return b.String()
}

func short(v any) string {
	if v == nil {
		return "(none)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}
