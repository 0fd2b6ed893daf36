package policies

import (
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	admin   = Actor{Name: "root", Role: RoleAdmin, Source: SourceAPI, Remote: "127.0.0.1"}
	secops  = Actor{Name: "sec", Role: RoleSecOps, Source: SourceCLI}
	netops  = Actor{Name: "net", Role: RoleNetOps, Source: SourceAPI}
	auditor = Actor{Name: "aud", Role: RoleAuditor, Source: SourceAPI}
)

func newFileService(t *testing.T) (*Service, *Engine, *FileStore) {
	t.Helper()
	st, err := OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	e, _ := testEngine(t)
	e.setIndex(newTable())
	s, err := NewService(t.Context(), ServiceConfig{Store: st, Changes: st, Engine: e, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s, e, st
}

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// basePolicy turns approvals.enforce off: the tests using it check what
// each role may write directly (TestApprovalsEnforcedByDefault checks the
// default, which sends secops and netops through change requests).
const basePolicy = `
settings: {approvals: {enforce: false}}
groups: [{name: staff}]
users: [{name: alice, groups: [staff]}]
locations: [{name: hq, cidrs: [10.0.0.0/8]}]
lists:
  - {name: deny, kind: deny, entries: [bad.example]}
  - {name: bypass, kind: bypass, entries: [update.example]}
rules:
  - {id: deny-list, lists: [deny], action: block}
  - {id: gambling, categories: [gambling], action: block}
`

func TestServiceVersionsDiffRollback(t *testing.T) {
	s, e, _ := newFileService(t)
	ctx := t.Context()
	v1, err := s.Put(ctx, admin, mustParse(t, basePolicy), "first")
	if err != nil {
		t.Fatal(err)
	}
	if v1.Number != 1 || e.PolicyVersion() != 1 {
		t.Fatalf("first version = %d, engine serves %d; want 1", v1.Number, e.PolicyVersion())
	}
	// Identical policy: no new version.
	if v, err := s.Put(ctx, admin, mustParse(t, basePolicy), "again"); err != nil || v.Number != 1 {
		t.Fatalf("Put(same) = %v, %v; want version 1", v, err)
	}
	p2 := mustParse(t, basePolicy)
	p2.Rules[1].Action = "warn"
	p2.Rules = append([]Rule{{ID: "news", Categories: []string{"news"}, Action: "warn"}}, p2.Rules...)
	v2, err := s.Put(ctx, secops, p2, "warn on gambling")
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.Diff(ctx, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, c := range d.Changes {
		kinds = append(kinds, c.Kind+" "+c.Name)
	}
	if got := strings.Join(kinds, ","); got != "added news,changed gambling" {
		t.Errorf("Diff(1,2) changes = %q, want added news,changed gambling\n%s", got, d)
	}
	if !strings.Contains(d.String(), `action: "block" → "warn"`) {
		t.Errorf("Diff text lacks the action change:\n%s", d)
	}
	rb, err := s.Rollback(ctx, secops, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	if rb.Number != 3 || rb.RollbackOf != 1 || e.PolicyVersion() != 3 {
		t.Fatalf("rollback = version %d of %d, engine %d", rb.Number, rb.RollbackOf, e.PolicyVersion())
	}
	if d, _ := s.Diff(ctx, 1, 3); len(d.Changes) != 0 {
		t.Errorf("rollback differs from version 1: %s", d)
	}
	vs, err := s.Versions(ctx)
	if err != nil || len(vs) != 3 || vs[0].Number != 3 || vs[2].Author != "root" || vs[1].Comment != "warn on gambling" {
		t.Fatalf("Versions = %+v, %v", vs, err)
	}
	if v2.Time.IsZero() || v2.Source != SourceCLI {
		t.Errorf("version 2 metadata = %+v", v2.VersionInfo)
	}
	if _, err := s.Version(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Version(99) error = %v, want ErrNotFound", err)
	}
}

func TestServiceRolesAndValidation(t *testing.T) {
	s, _, _ := newFileService(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, admin, mustParse(t, basePolicy), "base"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		a      Actor
		do     func(a Actor) error
		wantOK bool
	}{
		{"auditor cannot add list entries", auditor, func(a Actor) error {
			_, err := s.AddListEntries(ctx, a, "deny", []string{"x.example"}, "")
			return err
		}, false},
		{"netops cannot edit deny list", netops, func(a Actor) error {
			_, err := s.AddListEntries(ctx, a, "deny", []string{"x.example"}, "")
			return err
		}, false},
		{"netops edits bypass list", netops, func(a Actor) error {
			_, err := s.AddListEntries(ctx, a, "bypass", []string{"cdn.example"}, "")
			return err
		}, true},
		{"secops edits deny list", secops, func(a Actor) error {
			_, err := s.AddListEntries(ctx, a, "deny", []string{"x.example"}, "")
			return err
		}, true},
		{"secops cannot add users", secops, func(a Actor) error {
			_, err := s.PutUser(ctx, a, User{Name: "bob"})
			return err
		}, false},
		{"netops adds a location", netops, func(a Actor) error {
			_, err := s.PutLocation(ctx, a, Location{Name: "lab", CIDRs: []string{"192.0.2.0/24"}})
			return err
		}, true},
		{"secops cannot create tokens", secops, func(a Actor) error {
			_, _, err := s.CreateToken(ctx, a, "x", RoleAuditor)
			return err
		}, false},
		{"admin adds a user", admin, func(a Actor) error {
			_, err := s.PutUser(ctx, a, User{Name: "bob", Groups: []string{"staff"}})
			return err
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(tt.a)
			if tt.wantOK && err != nil {
				t.Fatalf("error %v, want success", err)
			}
			if !tt.wantOK {
				var fe *ForbiddenError
				if !errors.As(err, &fe) || !errors.Is(err, ErrForbidden) {
					t.Fatalf("error %v, want a ForbiddenError", err)
				}
			}
		})
	}
	// Invalid edits are refused whole, with the reason.
	before := s.Current().Number
	if _, err := s.DeleteGroup(ctx, admin, "staff"); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(err.Error(), `unknown group "staff"`) {
		t.Errorf("DeleteGroup(staff) in use: error %v, want invalid policy naming the group", err)
	}
	if _, err := s.AddListEntries(ctx, secops, "deny", []string{"ok.example", "bad entry!"}, ""); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("AddListEntries(bad) error = %v, want ErrInvalidPolicy", err)
	}
	if _, err := s.RemoveListEntries(ctx, secops, "deny", []string{"never.example"}, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveListEntries(absent) error = %v, want ErrNotFound", err)
	}
	if s.Current().Number != before {
		t.Errorf("refused edits created versions: %d → %d", before, s.Current().Number)
	}
}

func TestServiceAuditTokensReviews(t *testing.T) {
	s, _, st := newFileService(t)
	ctx := t.Context()
	dir := t.TempDir()
	tok, gen, err := s.EnsureAdminToken(ctx, dir, "")
	if err != nil || !gen {
		t.Fatalf("EnsureAdminToken = %q, %v, %v", tok, gen, err)
	}
	fi, err := os.Stat(filepath.Join(dir, AdminTokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v, mode %v; want 0600", err, fi.Mode())
	}
	tok2, gen2, err := s.EnsureAdminToken(ctx, dir, "")
	if err != nil || gen2 || tok2 != tok {
		t.Fatalf("second EnsureAdminToken = %q, %v, %v; want the same token, not generated", tok2, gen2, err)
	}
	rec, err := s.AuthenticateToken(ctx, tok)
	if err != nil || rec.Role != RoleAdmin {
		t.Fatalf("AuthenticateToken(admin) = %+v, %v", rec, err)
	}
	if _, err := s.AuthenticateToken(ctx, tok+"x"); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("AuthenticateToken(wrong) error = %v", err)
	}
	envTok := "from-the-environment-0123"
	if _, _, err := s.EnsureAdminToken(ctx, dir, envTok); err != nil {
		t.Fatal(err)
	}
	if rec, err := s.AuthenticateToken(ctx, envTok); err != nil || rec.Role != RoleAdmin {
		t.Errorf("env admin token: %+v, %v", rec, err)
	}
	if _, err := s.AuthenticateToken(ctx, tok); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("generated admin token still works after CORDON_ADMIN_TOKEN was set: %v", err)
	}
	rotated := "rotated-environment-token-456"
	if _, _, err := s.EnsureAdminToken(ctx, dir, rotated); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateToken(ctx, envTok); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("previous CORDON_ADMIN_TOKEN still works after rotation: %v", err)
	}
	aud, arec, err := s.CreateToken(ctx, admin, "auditor-1", RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.AuthenticateToken(ctx, aud); err != nil || got.Role != RoleAuditor || got.ID != arec.ID {
		t.Errorf("AuthenticateToken(auditor) = %+v, %v", got, err)
	}
	if err := s.RevokeToken(ctx, admin, arec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AuthenticateToken(ctx, aud); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("revoked token still works: %v", err)
	}
	if _, err := s.Put(ctx, admin, mustParse(t, basePolicy), "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddListEntries(ctx, secops, "deny", []string{"x.example"}, "ticket 42"); err != nil {
		t.Fatal(err)
	}
	id, err := s.SubmitReview(ctx, Review{User: "alice", URL: "http://x.example/", Host: "x.example", RuleID: "deny-list", Message: "I need this"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResolveReview(ctx, auditor, id, ReviewAccepted, ""); !errors.Is(err, ErrForbidden) {
		t.Errorf("auditor resolved a review: %v", err)
	}
	if r, err := s.ResolveReview(ctx, secops, id, ReviewRejected, "stays blocked"); err != nil || r.Status != ReviewRejected {
		t.Fatalf("ResolveReview = %+v, %v", r, err)
	}
	if rs, err := s.Reviews(ctx, ReviewRejected); err != nil || len(rs) != 1 || rs[0].ID != id {
		t.Errorf("Reviews(rejected) = %+v, %v", rs, err)
	}
	page, err := s.Audit(ctx, AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range page.Entries {
		got = append(got, e.Action)
	}
	want := "review.rejected,review.submit,list.entries.add,policy.put,token.revoke,token.create,token.create,token.revoke,token.create,token.revoke,token.create"
	if strings.Join(got, ",") != want {
		t.Errorf("audit actions = %v, want %v", strings.Join(got, ","), want)
	}
	for _, e := range page.Entries {
		if e.Seq == 0 || e.Time.IsZero() || e.Actor == "" || e.Source == "" {
			t.Errorf("incomplete audit entry %+v", e)
		}
	}
	// Paging and filters.
	p1, err := s.Audit(ctx, AuditQuery{Limit: 3})
	if err != nil || len(p1.Entries) != 3 || p1.Next == 0 {
		t.Fatalf("page 1 = %+v, %v", p1, err)
	}
	p2, err := s.Audit(ctx, AuditQuery{Limit: 3, Before: p1.Next})
	if err != nil || len(p2.Entries) != 3 || p2.Entries[0].Seq >= p1.Entries[2].Seq {
		t.Fatalf("page 2 = %+v, %v", p2, err)
	}
	if f, _ := s.Audit(ctx, AuditQuery{Action: "token."}); len(f.Entries) != 7 {
		t.Errorf("filter token.* = %d entries, want 7", len(f.Entries))
	}
	if f, _ := s.Audit(ctx, AuditQuery{Actor: "sec", Source: SourceCLI}); len(f.Entries) != 2 {
		t.Errorf("filter actor sec over cli = %d entries, want 2", len(f.Entries))
	}
	// A reopened store continues the sequence.
	st2, err := OpenFileStore(st.Dir())
	if err != nil {
		t.Fatal(err)
	}
	e := &AuditEntry{Time: time.Now(), Actor: "x", Source: SourceSystem, Action: "test"}
	if err := st2.AppendAudit(ctx, e); err != nil || e.Seq != int64(len(page.Entries)+1) {
		t.Errorf("reopened store seq = %d, %v; want %d", e.Seq, err, len(page.Entries)+1)
	}
}

func TestServicePreview(t *testing.T) {
	s, e, _ := newFileService(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, admin, mustParse(t, basePolicy), "base"); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := 0; i < 30; i++ {
		user := "alice"
		if i%3 == 0 {
			user = "bob"
		}
		ev := &AccessEvent{Time: now, User: user, ClientIP: netip.MustParseAddr("10.1.1.1"), Host: "news.example", Proto: "https", Categories: []string{"news"}}
		s.Record(ev)
		s.Record(&AccessEvent{Time: now, User: user, Host: "casino.example", Categories: []string{"gambling"}})
	}
	draft := mustParse(t, basePolicy)
	draft.Rules[1] = Rule{ID: "gambling", Categories: []string{"gambling"}, Action: "allow"}
	draft.Rules = append(draft.Rules, Rule{ID: "news-bob", Users: []string{"bob"}, Categories: []string{"news"}, Action: "block"})
	draft.Users = append(draft.Users, User{Name: "bob", Groups: []string{"staff"}})
	res, err := s.Preview(draft)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 60 || res.NewlyBlocked.Requests != 10 || len(res.NewlyBlocked.Users) != 1 || res.NewlyBlocked.Users[0].Name != "bob" {
		t.Errorf("preview newly blocked = %+v (events %d)", res.NewlyBlocked, res.Events)
	}
	if res.NewlyAllowed.Requests != 30 || res.Rules["gambling"] != 30 {
		t.Errorf("preview newly allowed = %+v, rules %v", res.NewlyAllowed, res.Rules)
	}
	if e.PolicyVersion() != 1 {
		t.Errorf("preview changed the served policy to %d", e.PolicyVersion())
	}
	if _, err := s.Preview(mustParse(t, "rules: [{id: x, categories: [nope], action: block}]")); !errors.Is(err, ErrInvalidPolicy) {
		t.Errorf("Preview(invalid) error = %v", err)
	}
}

func TestFileStoreConflict(t *testing.T) {
	st, err := OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	v := &Version{VersionInfo: VersionInfo{Number: 1}, Policy: &Policy{}}
	if err := st.PutVersion(ctx, v, &AuditEntry{Action: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutVersion(ctx, v, &AuditEntry{Action: "a"}); !errors.Is(err, ErrConflict) {
		t.Errorf("second PutVersion(1) error = %v, want ErrConflict", err)
	}
	v3 := &Version{VersionInfo: VersionInfo{Number: 3}, Policy: &Policy{}}
	if err := st.PutVersion(ctx, v3, &AuditEntry{Action: "a"}); !errors.Is(err, ErrConflict) {
		t.Errorf("PutVersion(3) after 1 error = %v, want ErrConflict", err)
	}
}

func TestFileStoreAuditSurvivesTornWrite(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for i := 0; i < 3; i++ {
		if err := st.AppendAudit(ctx, &AuditEntry{Action: "a", Actor: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	// A crash in the middle of the fourth write.
	f, err := os.OpenFile(filepath.Join(dir, "audit.jsonl"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":4,"time":"2026-01-0`)
	f.Close()
	st2, err := OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := &AuditEntry{Action: "b", Actor: "y"}
	if err := st2.AppendAudit(ctx, e); err != nil || e.Seq != 4 {
		t.Fatalf("append after torn write: seq %d, %v; want 4", e.Seq, err)
	}
	es, err := st2.AuditBefore(ctx, 0, 10)
	if err != nil || len(es) != 4 || es[0].Action != "b" || es[3].Seq != 1 {
		t.Fatalf("AuditBefore = %+v, %v", es, err)
	}
	if es, _ := st2.AuditBefore(ctx, 3, 10); len(es) != 2 || es[0].Seq != 2 {
		t.Errorf("AuditBefore(3) = %+v", es)
	}
	st3, err := OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if es, _ := st3.AuditBefore(ctx, 0, 10); len(es) != 4 {
		t.Errorf("reopened: %d entries, want 4", len(es))
	}
}

func TestReviewRateLimit(t *testing.T) {
	s, _, _ := newFileService(t)
	ctx := t.Context()
	for i := 0; i < maxReviewsPerHour; i++ {
		if _, err := s.SubmitReview(ctx, Review{User: "mallory", Host: "x.example"}); err != nil {
			t.Fatalf("review %d: %v", i+1, err)
		}
	}
	if _, err := s.SubmitReview(ctx, Review{User: "mallory", Host: "x.example"}); !errors.Is(err, ErrConflict) {
		t.Errorf("review over the hourly limit: %v, want ErrConflict", err)
	}
	if _, err := s.SubmitReview(ctx, Review{User: "alice", Host: "x.example"}); err != nil {
		t.Errorf("another user's review refused: %v", err)
	}
	if rs, _ := s.Reviews(ctx, ReviewOpen); len(rs) != maxReviewsPerHour+1 {
		t.Errorf("%d open reviews, want %d", len(rs), maxReviewsPerHour+1)
	}
}
