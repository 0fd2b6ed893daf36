package policies

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	env := newAPIEnv(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", basePolicy)
	bad := write("bad.yaml", "rules:\n  - id: x\n    categories: [gamblin]\n    action: block\n")
	run := func(args ...string) (string, string, error) {
		var out, errb bytes.Buffer
		args = append(args, "--server", env.srv.URL, "--token", env.admin)
		err := runCLI(t.Context(), args, strings.NewReader("s3cret\n"), &out, &errb)
		return out.String(), errb.String(), err
	}
	if out, _, err := run("validate", good); err != nil || !strings.Contains(out, "valid") {
		t.Fatalf("validate good: %q %v", out, err)
	}
	if _, errOut, err := run("validate", bad); !errors.Is(err, ErrInvalidPolicy) || !strings.Contains(errOut, "bad.yaml:line 3: rules[0].categories[0]: unknown category") {
		t.Fatalf("validate bad: %q %v", errOut, err)
	}
	if out, _, err := run("apply", good, "-m", "from the CLI"); err != nil || !strings.HasPrefix(out, "version 1 by admin") {
		t.Fatalf("apply: %q %v", out, err)
	}
	changed := write("changed.yaml", strings.Replace(basePolicy, "{id: gambling, categories: [gambling], action: block}", "{id: gambling, categories: [gambling], action: warn}", 1))
	if out, _, err := run("diff", changed); err != nil || !strings.Contains(out, "~ changed rules gambling") || !strings.Contains(out, `action: "block" → "warn"`) {
		t.Fatalf("diff file: %q %v", out, err)
	}
	if out, _, err := run("preview", changed); err != nil || !strings.Contains(out, "replayed 0 recent requests against version 1") {
		t.Fatalf("preview: %q %v", out, err)
	}
	if _, _, err := run("apply", changed); err != nil {
		t.Fatal(err)
	}
	if out, _, err := run("diff"); err != nil || !strings.Contains(out, "version 1 → 2: 1 change(s)") {
		t.Fatalf("diff: %q %v", out, err)
	}
	if out, _, err := run("rollback", "1", "-m", "undo"); err != nil || out != "version 3 restores version 1\n" {
		t.Fatalf("rollback: %q %v", out, err)
	}
	out, _, err := run("history")
	if err != nil || !strings.Contains(out, "3  ") || !strings.Contains(out, "from the CLI") || strings.Count(out, "\n") != 4 {
		t.Fatalf("history: %q %v", out, err)
	}
	if out, _, err := run("get", "2"); err != nil || !strings.Contains(out, "action: warn") {
		t.Fatalf("get 2: %q %v", out, err)
	}
	if out, _, err := run("hash-password"); err != nil || !verifyPassword(strings.TrimSpace(out), "s3cret") {
		t.Fatalf("hash-password: %q %v", out, err)
	}
	// The changes are audited as coming from the CLI.
	page, _ := env.svc.Audit(t.Context(), AuditQuery{Source: SourceCLI})
	if len(page.Entries) != 3 {
		t.Errorf("CLI changes in the audit log: %d, want 3", len(page.Entries))
	}
	var errb bytes.Buffer
	if err := runCLI(t.Context(), []string{"history", "--server", env.srv.URL, "--token", "wrong-token-000000"}, nil, &bytes.Buffer{}, &errb); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("wrong token: %v", err)
	}
	if err := runCLI(t.Context(), []string{"frobnicate"}, nil, &bytes.Buffer{}, &errb); err == nil {
		t.Error("unknown command accepted")
	}
}
