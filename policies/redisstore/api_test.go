package redisstore

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/internal/testutil"
	"github.com/cordon-gw/cordon/policies"
)

// TestTwoAPIsShareOnePolicy runs two complete edges (store, engine,
// service, admin API) on one redis-server and drives them over HTTP.
func TestTwoAPIsShareOnePolicy(t *testing.T) {
	r := testutil.StartRedis(t)
	a, b := newEdge(t, r), newEdge(t, r)
	srv := func(e *edge) *httptest.Server {
		api, err := policies.NewAPI(policies.APIConfig{Service: e.svc, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		s := httptest.NewServer(api)
		t.Cleanup(s.Close)
		return s
	}
	sa, sb := srv(a), srv(b)
	adminTok, _, err := a.svc.EnsureAdminToken(t.Context(), t.TempDir(), "shared-admin-token-for-tests")
	if err != nil {
		t.Fatal(err)
	}
	call := func(s *httptest.Server, tok, method, path, ctype, body string, out any) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, s.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if out != nil && resp.StatusCode < 300 {
			if err := json.Unmarshal(raw, out); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}
		}
		return resp.StatusCode
	}
	// A token created through edge a works on edge b.
	var tok struct{ Token string }
	if code := call(sa, adminTok, "POST", "/api/v1/tokens", "application/json", `{"name": "sec", "role": "secops"}`, &tok); code != 201 {
		t.Fatalf("create token on a: %d", code)
	}
	var aud struct{ Token string }
	if code := call(sb, adminTok, "POST", "/api/v1/tokens", "application/json", `{"name": "aud", "role": "auditor"}`, &aud); code != 201 {
		t.Fatalf("create token on b: %d", code)
	}
	// Direct writes by secops: approvals.enforce off.
	policy := "settings: {approvals: {enforce: false}}\nlists: [{name: deny, kind: deny, entries: [bad.example]}]\nrules: [{id: deny, lists: [deny], action: block}]\n"
	// The first policy comes from an admin (secops writes only within a
	// policy whose approvals.enforce is off).
	if code := call(sa, adminTok, "PUT", "/api/v1/policy?comment=first", "application/yaml", policy, nil); code != 200 {
		t.Fatalf("PUT on a: %d", code)
	}
	// b serves it within a second.
	deadline := time.Now().Add(time.Second)
	for {
		var v policies.Version
		if call(sb, aud.Token, "GET", "/api/v1/policy", "", "", &v); v.Number == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("edge b does not serve version 1 within 1s of the PUT on edge a")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var lr policies.LookupResult
	if call(sb, aud.Token, "GET", "/api/v1/lookup?url=bad.example", "", "", &lr); lr.Decision.Action != "block" {
		t.Errorf("lookup on b = %+v", lr.Decision)
	}
	// The auditor cannot change anything on either edge.
	if code := call(sb, aud.Token, "POST", "/api/v1/lists/deny/entries", "application/json", `{"entries": ["x.example"]}`, nil); code != 403 {
		t.Errorf("auditor list edit on b: %d, want 403", code)
	}
	if code := call(sb, tok.Token, "POST", "/api/v1/lists/deny/entries", "application/json", `{"entries": ["x.example"]}`, nil); code != 200 {
		t.Fatalf("secops list edit on b: %d", code)
	}
	if code := call(sb, tok.Token, "POST", "/api/v1/policy/rollback", "application/json", `{"version": 1}`, nil); code != 200 {
		t.Fatalf("rollback on b: %d", code)
	}
	waitVersion(t, a, 3, time.Second)
	req := policies.Request{Host: "x.example"}
	if d, _ := a.engine.Check(&req); d.Action != policies.ActionAllow {
		t.Errorf("edge a after rollback decides %v for x.example, want allow", d.Action)
	}
	var page policies.AuditPage
	call(sa, aud.Token, "GET", "/api/v1/audit", "", "", &page)
	var got []string
	for _, e := range page.Entries {
		got = append(got, e.Action+"/"+e.Actor)
	}
	want := "policy.rollback/sec,list.entries.add/sec,policy.put/admin,token.create/admin,token.create/admin,token.create/system"
	if strings.Join(got, ",") != want {
		t.Errorf("audit on a = %s\nwant %s", strings.Join(got, ","), want)
	}
}
