package policies

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
)

// Role is what an API token may do.
type Role string

// Roles.
const (
	// RoleAdmin may do everything, including tokens, users and groups.
	RoleAdmin Role = "admin"
	// RoleSecOps manages rules, allow/deny lists, policy settings, feeds
	// and review requests.
	RoleSecOps Role = "secops"
	// RoleNetOps manages locations, bypass lists and traffic steering.
	RoleNetOps Role = "netops"
	// RoleAuditor reads everything (policy, versions, audit, reports) and
	// changes nothing.
	RoleAuditor Role = "auditor"
)

// Roles lists every role.
var Roles = []Role{RoleAdmin, RoleSecOps, RoleNetOps, RoleAuditor}

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return slices.Contains(Roles, r) }

// Permission is what a route or an operation requires.
type Permission uint8

// Permissions, each granted to the roles listed.
const (
	// PermRead: read-only access (every role).
	PermRead Permission = iota
	// PermWrite: any change at all (every role but auditor); the Service
	// then checks the section-specific permission of what changes.
	PermWrite
	// PermSecurity: rules, allow/deny lists, settings, feeds, reviews
	// (admin, secops).
	PermSecurity
	// PermNetwork: locations, bypass lists, PAC/steering (admin, netops).
	PermNetwork
	// PermAdmin: tokens, users, groups (admin).
	PermAdmin
)

var permNames = [...]string{"read", "write", "security", "network", "admin"}

func (p Permission) String() string {
	if int(p) < len(permNames) {
		return permNames[p]
	}
	return "unknown"
}

// Allows reports whether role r has permission p.
func (r Role) Allows(p Permission) bool {
	switch r {
	case RoleAdmin:
		return true
	case RoleSecOps:
		return p == PermRead || p == PermWrite || p == PermSecurity
	case RoleNetOps:
		return p == PermRead || p == PermWrite || p == PermNetwork
	case RoleAuditor:
		return p == PermRead
	}
	return false
}

// rolesWith lists the roles that have p, for error messages.
func rolesWith(p Permission) []Role {
	var out []Role
	for _, r := range Roles {
		if r.Allows(p) {
			out = append(out, r)
		}
	}
	return out
}

// ForbiddenError says which permission a role lacked and for what.
type ForbiddenError struct {
	Role       Role
	Permission Permission
	What       string
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("policies: role %q may not %s: it needs the %s permission (roles %v)", e.Role, e.What, e.Permission, rolesWith(e.Permission))
}

// Unwrap makes errors.Is(err, ErrForbidden) true.
func (e *ForbiddenError) Unwrap() error { return ErrForbidden }

// requiredPermissions lists what changing policy a into b needs, section
// by section, with a description of each change.
func requiredPermissions(a, b *Policy) map[Permission][]string {
	need := map[Permission][]string{}
	add := func(p Permission, what string) { need[p] = append(need[p], what) }
	if !jsonEqual(a.Settings, b.Settings) {
		add(PermSecurity, "change settings")
	}
	if !jsonEqual(a.Rules, b.Rules) {
		add(PermSecurity, "change rules")
	}
	if !jsonEqual(a.Users, b.Users) {
		add(PermAdmin, "change users")
	}
	if !jsonEqual(a.Groups, b.Groups) {
		add(PermAdmin, "change groups")
	}
	if !jsonEqual(a.Locations, b.Locations) {
		add(PermNetwork, "change locations")
	}
	// Lists: each changed list needs the permission of its kind (old and
	// new kind when the kind changes).
	old := map[string]List{}
	for _, l := range a.Lists {
		old[l.Name] = l
	}
	seen := map[string]bool{}
	for _, l := range b.Lists {
		seen[l.Name] = true
		o, ok := old[l.Name]
		if ok && reflect.DeepEqual(o, l) {
			continue
		}
		add(listPermission(l.Kind), "change list "+l.Name)
		if ok && o.Kind != l.Kind {
			add(listPermission(o.Kind), "change list "+l.Name)
		}
	}
	for _, l := range a.Lists {
		if !seen[l.Name] {
			add(listPermission(l.Kind), "delete list "+l.Name)
		}
	}
	return need
}

func listPermission(kind string) Permission {
	if kind == ListBypass {
		return PermNetwork
	}
	return PermSecurity
}

func jsonEqual(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}
