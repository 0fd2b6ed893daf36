package policies

import (
	"fmt"
	"slices"
)

// Patch changes named parts of a policy; every part is optional. Applying
// it to a policy that lacks something it names is an error naming it, and
// changes nothing.
type Patch struct {
	Rules     *RulesPatch           `json:"rules,omitempty"`
	Lists     *ListsPatch           `json:"lists,omitempty"`
	Bypass    *BypassPatch          `json:"bypass,omitempty"`
	Locations *NamedPatch[Location] `json:"locations,omitempty"`
	Users     *NamedPatch[User]     `json:"users,omitempty"`
	Groups    *NamedPatch[Group]    `json:"groups,omitempty"`
	// Settings replaces the whole settings object.
	Settings *Settings `json:"settings,omitempty"`
}

// RulesPatch adds, updates (by id) and deletes rules.
type RulesPatch struct {
	Add    []RuleAdd `json:"add,omitempty"`
	Update []Rule    `json:"update,omitempty"`
	Delete []string  `json:"delete,omitempty"`
}

// RuleAdd is a new rule, inserted before the rule named Before (appended
// when empty).
type RuleAdd struct {
	Rule   Rule   `json:"rule"`
	Before string `json:"before,omitempty"`
}

// ListsPatch puts (adds or replaces) and deletes lists, and adds or
// removes entries of existing lists.
type ListsPatch struct {
	Put           []List              `json:"put,omitempty"`
	Delete        []string            `json:"delete,omitempty"`
	AddEntries    map[string][]string `json:"add_entries,omitempty"`
	RemoveEntries map[string][]string `json:"remove_entries,omitempty"`
}

// BypassPatch adds or removes entries of a bypass list: List, or the only
// bypass list of the policy (a list "bypass" is created when there is
// none).
type BypassPatch struct {
	List   string   `json:"list,omitempty"`
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// NamedPatch puts (adds or replaces by name) and deletes named items.
type NamedPatch[T any] struct {
	Put    []T      `json:"put,omitempty"`
	Delete []string `json:"delete,omitempty"`
}

// Empty reports whether the patch changes nothing at all.
func (pt *Patch) Empty() bool {
	return pt == nil || (pt.Rules == nil && pt.Lists == nil && pt.Bypass == nil && pt.Locations == nil &&
		pt.Users == nil && pt.Groups == nil && pt.Settings == nil)
}

func patchErr(format string, args ...any) error {
	return fmt.Errorf("policies: patch: %w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// Apply returns a copy of p with the patch applied.
func (pt *Patch) Apply(p *Policy) (*Policy, error) {
	if pt.Empty() {
		return nil, patchErr("the patch changes nothing: give rules, lists, bypass, locations, users, groups or settings")
	}
	q := p.Clone()
	if pt.Settings != nil {
		q.Settings = *pt.Settings
	}
	var err error
	if pt.Groups != nil {
		if q.Groups, err = applyNamed("groups", q.Groups, pt.Groups, func(g Group) string { return g.Name }); err != nil {
			return nil, err
		}
	}
	if pt.Users != nil {
		if q.Users, err = applyNamed("users", q.Users, pt.Users, func(u User) string { return u.Name }); err != nil {
			return nil, err
		}
	}
	if pt.Locations != nil {
		if q.Locations, err = applyNamed("locations", q.Locations, pt.Locations, func(l Location) string { return l.Name }); err != nil {
			return nil, err
		}
	}
	if l := pt.Lists; l != nil {
		if len(l.Put) == 0 && len(l.Delete) == 0 && len(l.AddEntries) == 0 && len(l.RemoveEntries) == 0 {
			return nil, patchErr("lists: give put, delete, add_entries or remove_entries")
		}
	}
	if l := pt.Lists; l != nil && (len(l.Put) > 0 || len(l.Delete) > 0) {
		if q.Lists, err = applyNamed("lists", q.Lists, &NamedPatch[List]{Put: l.Put, Delete: l.Delete}, func(l List) string { return l.Name }); err != nil {
			return nil, err
		}
	}
	if l := pt.Lists; l != nil {
		for _, name := range sortedKeys(l.AddEntries) {
			i := slices.IndexFunc(q.Lists, func(x List) bool { return x.Name == name })
			if i < 0 {
				return nil, patchErr("lists.add_entries: list %q does not exist", name)
			}
			for _, e := range l.AddEntries[name] {
				if !slices.Contains(q.Lists[i].Entries, e) {
					q.Lists[i].Entries = append(q.Lists[i].Entries, e)
				}
			}
		}
		for _, name := range sortedKeys(l.RemoveEntries) {
			i := slices.IndexFunc(q.Lists, func(x List) bool { return x.Name == name })
			if i < 0 {
				return nil, patchErr("lists.remove_entries: list %q does not exist", name)
			}
			for _, e := range l.RemoveEntries[name] {
				j := slices.Index(q.Lists[i].Entries, e)
				if j < 0 {
					return nil, patchErr("lists.remove_entries: %q is not on list %q", e, name)
				}
				q.Lists[i].Entries = slices.Delete(q.Lists[i].Entries, j, j+1)
			}
		}
	}
	if b := pt.Bypass; b != nil {
		if len(b.Add) == 0 && len(b.Remove) == 0 {
			return nil, patchErr("bypass: give add or remove entries")
		}
		name, err := bypassList(q, b.List)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(q.Lists, func(x List) bool { return x.Name == name })
		if i < 0 {
			q.Lists = append(q.Lists, List{Name: name, Kind: ListBypass})
			i = len(q.Lists) - 1
		}
		for _, e := range b.Add {
			if !slices.Contains(q.Lists[i].Entries, e) {
				q.Lists[i].Entries = append(q.Lists[i].Entries, e)
			}
		}
		for _, e := range b.Remove {
			j := slices.Index(q.Lists[i].Entries, e)
			if j < 0 {
				return nil, patchErr("bypass.remove: %q is not on bypass list %q", e, name)
			}
			q.Lists[i].Entries = slices.Delete(q.Lists[i].Entries, j, j+1)
		}
	}
	if r := pt.Rules; r != nil {
		if q.Rules, err = applyRules(q.Rules, r); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// bypassList is the bypass list a BypassPatch edits.
func bypassList(p *Policy, name string) (string, error) {
	var bypass []string
	for _, l := range p.Lists {
		if l.Kind == ListBypass {
			bypass = append(bypass, l.Name)
		}
		if name != "" && l.Name == name && l.Kind != ListBypass {
			return "", patchErr("bypass.list: list %q is a %s list, not a bypass list", name, l.Kind)
		}
	}
	switch {
	case name != "":
		if !slices.Contains(bypass, name) {
			return "", patchErr("bypass.list: bypass list %q does not exist", name)
		}
		return name, nil
	case len(bypass) == 0:
		return "bypass", nil
	case len(bypass) == 1:
		return bypass[0], nil
	}
	return "", patchErr("bypass.list: the policy has %d bypass lists (%v): name one", len(bypass), bypass)
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func applyNamed[T any](section string, items []T, np *NamedPatch[T], name func(T) string) ([]T, error) {
	if len(np.Put) == 0 && len(np.Delete) == 0 {
		return nil, patchErr("%s: give put or delete", section)
	}
	for _, n := range np.Delete {
		i := slices.IndexFunc(items, func(x T) bool { return name(x) == n })
		if i < 0 {
			return nil, patchErr("%s.delete: %q does not exist", section, n)
		}
		items = slices.Delete(items, i, i+1)
	}
	for _, x := range np.Put {
		if name(x) == "" {
			return nil, patchErr("%s.put: an item without a name", section)
		}
		items = upsert(items, x, name)
	}
	return items, nil
}

func applyRules(rules []Rule, rp *RulesPatch) ([]Rule, error) {
	if len(rp.Add) == 0 && len(rp.Update) == 0 && len(rp.Delete) == 0 {
		return nil, patchErr("rules: give add, update or delete")
	}
	idx := func(id string) int { return slices.IndexFunc(rules, func(r Rule) bool { return r.ID == id }) }
	for _, id := range rp.Delete {
		i := idx(id)
		if i < 0 {
			return nil, patchErr("rules.delete: rule %q does not exist", id)
		}
		rules = slices.Delete(rules, i, i+1)
	}
	for _, r := range rp.Update {
		i := idx(r.ID)
		if i < 0 {
			return nil, patchErr("rules.update: rule %q does not exist", r.ID)
		}
		rules[i] = r
	}
	for _, a := range rp.Add {
		if a.Rule.ID == "" {
			return nil, patchErr("rules.add: a rule without an id")
		}
		if idx(a.Rule.ID) >= 0 {
			return nil, patchErr("rules.add: rule %q already exists (use update)", a.Rule.ID)
		}
		at := len(rules)
		if a.Before != "" {
			if at = idx(a.Before); at < 0 {
				return nil, patchErr("rules.add: rule %q (before) does not exist", a.Before)
			}
		}
		rules = slices.Insert(rules, at, a.Rule)
	}
	return rules, nil
}

// item is one named part of a policy, for three-way merges.
type item struct{ section, name string }

// itemValue returns the JSON-able value of an item in p (nil: absent).
func itemValue(p *Policy, it item) any {
	switch it.section {
	case SectionSettings:
		return p.Settings
	case SectionRules:
		for _, r := range p.Rules {
			if r.ID == it.name {
				return r
			}
		}
	case SectionLists, SectionBypass:
		for _, l := range p.Lists {
			if l.Name == it.name {
				return l
			}
		}
	case SectionLocations:
		for _, l := range p.Locations {
			if l.Name == it.name {
				return l
			}
		}
	case SectionUsers:
		for _, u := range p.Users {
			if u.Name == it.name {
				return u
			}
		}
	case SectionGroups:
		for _, g := range p.Groups {
			if g.Name == it.name {
				return g
			}
		}
	}
	return nil
}

// changedItems lists the items that differ between a and b (rules whose
// content or position among the other rules changed included).
func changedItems(a, b *Policy) []item {
	var out []item
	for _, c := range DiffPolicies(a, b) {
		sec := c.Section
		if sec == SectionLists {
			if l, ok := itemValue(b, item{SectionLists, c.Name}).(List); ok && l.Kind == ListBypass {
				sec = SectionBypass
			} else if l, ok := itemValue(a, item{SectionLists, c.Name}).(List); ok && l.Kind == ListBypass {
				sec = SectionBypass
			}
		}
		out = append(out, item{sec, c.Name})
	}
	return out
}

// derivePatch turns a full draft into the patch that makes base into it,
// so a draft can be re-applied on another version.
func derivePatch(base, draft *Policy) *Patch {
	pt := &Patch{}
	for _, it := range changedItems(base, draft) {
		v := itemValue(draft, it)
		switch it.section {
		case SectionSettings:
			s := draft.Settings
			pt.Settings = &s
		case SectionRules:
			if pt.Rules == nil {
				pt.Rules = &RulesPatch{}
			}
			if itemValue(base, it) != nil {
				pt.Rules.Delete = append(pt.Rules.Delete, it.name)
			}
			if r, ok := v.(Rule); ok {
				i := slices.IndexFunc(draft.Rules, func(x Rule) bool { return x.ID == r.ID })
				add := RuleAdd{Rule: r}
				// insert before the next rule of the draft that stays where it was
				for _, next := range draft.Rules[i+1:] {
					if itemValue(base, item{SectionRules, next.ID}) != nil {
						add.Before = next.ID
						break
					}
				}
				pt.Rules.Add = append(pt.Rules.Add, add)
			}
		case SectionLists, SectionBypass:
			if pt.Lists == nil {
				pt.Lists = &ListsPatch{}
			}
			if l, ok := v.(List); ok {
				pt.Lists.Put = append(pt.Lists.Put, l)
			} else {
				pt.Lists.Delete = append(pt.Lists.Delete, it.name)
			}
		case SectionLocations:
			if pt.Locations == nil {
				pt.Locations = &NamedPatch[Location]{}
			}
			if l, ok := v.(Location); ok {
				pt.Locations.Put = append(pt.Locations.Put, l)
			} else {
				pt.Locations.Delete = append(pt.Locations.Delete, it.name)
			}
		case SectionUsers:
			if pt.Users == nil {
				pt.Users = &NamedPatch[User]{}
			}
			if u, ok := v.(User); ok {
				pt.Users.Put = append(pt.Users.Put, u)
			} else {
				pt.Users.Delete = append(pt.Users.Delete, it.name)
			}
		case SectionGroups:
			if pt.Groups == nil {
				pt.Groups = &NamedPatch[Group]{}
			}
			if g, ok := v.(Group); ok {
				pt.Groups.Put = append(pt.Groups.Put, g)
			} else {
				pt.Groups.Delete = append(pt.Groups.Delete, it.name)
			}
		}
	}
	// Additions go in draft order, each before a rule that was already
	// there, and after every deletion (applyRules deletes first).
	return pt
}

// rebase3 merges a change (base → mine) onto live (base → live): the
// items the change touched are taken from mine, unless live changed the
// same item differently, which is a conflict. It returns the merged
// policy or the conflicts.
func rebase3(base, mine, live *Policy) (*Policy, []Conflict, error) {
	if conflicts := conflicts3(base, mine, live, nil); len(conflicts) > 0 {
		return nil, conflicts, nil
	}
	pt := derivePatch(base, mine)
	if pt.Empty() {
		return live.Clone(), nil, nil
	}
	// Re-derive against live so items both sides changed identically are
	// neither deleted twice nor added twice.
	merged, err := applyMerge(pt, live)
	if err != nil {
		return nil, nil, err
	}
	return merged, nil, nil
}

// conflicts3 lists the items both base → mine and base → live changed,
// differently; items in skip are merged by entry and never conflict.
func conflicts3(base, mine, live *Policy, skip map[item]bool) []Conflict {
	var conflicts []Conflict
	liveChanged := map[item]bool{}
	for _, it := range changedItems(base, live) {
		liveChanged[it] = true
	}
	for _, it := range changedItems(base, mine) {
		if !liveChanged[it] || skip[it] {
			continue
		}
		mv, lv := itemValue(mine, it), itemValue(live, it)
		if jsonEqual(mv, lv) {
			continue // both made the same change
		}
		conflicts = append(conflicts, Conflict{Section: it.section, Name: it.name, Base: itemValue(base, it), Live: lv, Change: mv})
	}
	return conflicts
}

// entryItems are the lists a patch only edits entry by entry (merged with
// whatever else changed on the list).
func (pt *Patch) entryItems(base *Policy) map[item]bool {
	out := map[item]bool{}
	kind := func(name string) string {
		for _, l := range base.Lists {
			if l.Name == name && l.Kind == ListBypass {
				return SectionBypass
			}
		}
		return SectionLists
	}
	if l := pt.Lists; l != nil {
		for n := range l.AddEntries {
			out[item{kind(n), n}] = true
		}
		for n := range l.RemoveEntries {
			out[item{kind(n), n}] = true
		}
		for _, x := range l.Put {
			delete(out, item{kind(x.Name), x.Name})
		}
		for _, n := range l.Delete {
			delete(out, item{kind(n), n})
		}
	}
	if b := pt.Bypass; b != nil {
		if n, err := bypassList(base, b.List); err == nil {
			out[item{SectionBypass, n}] = true
		}
	}
	return out
}

// rebasePatch re-applies a patch to live after checking that nothing it
// replaces was changed on live since base.
func rebasePatch(pt *Patch, base, live *Policy) (*Policy, []Conflict, error) {
	mine, err := pt.Apply(base)
	if err != nil {
		return nil, nil, err
	}
	if conflicts := conflicts3(base, mine, live, pt.entryItems(base)); len(conflicts) > 0 {
		return nil, conflicts, nil
	}
	merged, err := pt.Apply(live)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (re-applying the patch on the live version)", err)
	}
	return merged, nil, nil
}

// applyMerge applies a derived patch to live, tolerating items live
// already has in the patch's final form.
func applyMerge(pt *Patch, live *Policy) (*Policy, error) {
	q := live.Clone()
	if r := pt.Rules; r != nil {
		var keep RulesPatch
		for _, id := range r.Delete {
			if slices.ContainsFunc(q.Rules, func(x Rule) bool { return x.ID == id }) {
				keep.Delete = append(keep.Delete, id)
			}
		}
		for _, a := range r.Add {
			if a.Before != "" && !slices.ContainsFunc(q.Rules, func(x Rule) bool { return x.ID == a.Before }) {
				a.Before = "" // the anchor is gone on live: append
			}
			keep.Add = append(keep.Add, a)
		}
		pt = &Patch{Rules: nilIfEmpty(&keep), Lists: pt.Lists, Bypass: pt.Bypass, Locations: pt.Locations,
			Users: pt.Users, Groups: pt.Groups, Settings: pt.Settings}
	}
	for _, np := range []func(){
		func() {
			if pt.Lists != nil {
				pt.Lists.Delete = existing(pt.Lists.Delete, func(n string) bool {
					return slices.ContainsFunc(q.Lists, func(x List) bool { return x.Name == n })
				})
			}
		},
		func() {
			if pt.Locations != nil {
				pt.Locations.Delete = existing(pt.Locations.Delete, func(n string) bool {
					return slices.ContainsFunc(q.Locations, func(x Location) bool { return x.Name == n })
				})
			}
		},
		func() {
			if pt.Users != nil {
				pt.Users.Delete = existing(pt.Users.Delete, func(n string) bool {
					return slices.ContainsFunc(q.Users, func(x User) bool { return x.Name == n })
				})
			}
		},
		func() {
			if pt.Groups != nil {
				pt.Groups.Delete = existing(pt.Groups.Delete, func(n string) bool {
					return slices.ContainsFunc(q.Groups, func(x Group) bool { return x.Name == n })
				})
			}
		},
	} {
		np()
	}
	if pt.Lists != nil && len(pt.Lists.Put) == 0 && len(pt.Lists.Delete) == 0 {
		pt.Lists = nil
	}
	if pt.Locations != nil && len(pt.Locations.Put) == 0 && len(pt.Locations.Delete) == 0 {
		pt.Locations = nil
	}
	if pt.Users != nil && len(pt.Users.Put) == 0 && len(pt.Users.Delete) == 0 {
		pt.Users = nil
	}
	if pt.Groups != nil && len(pt.Groups.Put) == 0 && len(pt.Groups.Delete) == 0 {
		pt.Groups = nil
	}
	if pt.Empty() {
		return q, nil
	}
	return pt.Apply(q)
}

func nilIfEmpty(r *RulesPatch) *RulesPatch {
	if len(r.Add) == 0 && len(r.Update) == 0 && len(r.Delete) == 0 {
		return nil
	}
	return r
}

func existing(names []string, has func(string) bool) []string {
	var out []string
	for _, n := range names {
		if has(n) {
			out = append(out, n)
		}
	}
	return out
}
