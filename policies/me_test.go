package policies

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestAPIMe(t *testing.T) {
	env := newAPIEnv(t)
	for _, tc := range []struct {
		role Role
		want []string
	}{
		{RoleAdmin, []string{"read", "write", "security", "network", "admin"}},
		{RoleSecOps, []string{"read", "write", "security"}},
		{RoleNetOps, []string{"read", "write", "network"}},
		{RoleAuditor, []string{"read"}},
	} {
		var me Me
		if code := env.do(t, tc.role, "GET", "/api/v1/me", "", "", &me); code != 200 {
			t.Fatalf("GET /me as %s: %d", tc.role, code)
		}
		// No policy yet: only admin tokens may write directly (the
		// default approvals.enforce).
		if me.Role != tc.role || !slices.Equal(me.Permissions, tc.want) || me.Name == "" || me.DirectWrites != (tc.role == RoleAdmin) {
			t.Errorf("GET /me as %s = %+v, want role %s permissions %v", tc.role, me, tc.role, tc.want)
		}
		for _, p := range []Permission{PermRead, PermWrite, PermSecurity, PermNetwork, PermAdmin} {
			if got := slices.Contains(me.Permissions, p.String()); got != tc.role.Allows(p) {
				t.Errorf("/me as %s lists %s = %v, but Allows says %v", tc.role, p, got, !got)
			}
		}
	}
	if code := env.do(t, RoleAdmin, "GET", "/api/v1/me?x=1", "", "", nil); code != 400 {
		t.Errorf("GET /me?x=1 = %d, want 400", code)
	}
}

// TestAPIConsoleSource: calls marked as coming from the console are
// audited with source "console".
func TestAPIConsoleSource(t *testing.T) {
	env := newAPIEnv(t)
	req := `{"cidrs": ["10.9.0.0/16"]}`
	code := env.doHeader(t, RoleAdmin, "PUT", "/api/v1/locations/lab", "application/json", req, ClientHeader, "console")
	if code != 200 {
		t.Fatalf("PUT location from the console: %d", code)
	}
	var page AuditPage
	env.do(t, RoleAuditor, "GET", "/api/v1/audit?source=console", "", "", &page)
	if len(page.Entries) != 1 || page.Entries[0].Action != "location.put" || page.Entries[0].Source != SourceConsole {
		t.Errorf("audit of console calls = %+v", page.Entries)
	}
}

// doHeader is do with one extra request header and no decoding.
func (e *apiEnv) doHeader(t *testing.T, role Role, method, path, ctype, body, key, value string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.tokens[role])
	req.Header.Set("Content-Type", ctype)
	req.Header.Set(key, value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
