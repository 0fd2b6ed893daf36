package policies

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestChangeCLI(t *testing.T) {
	env := newChangeEnv(t)
	dir := t.TempDir()
	run := func(who string, args ...string) (string, string, error) {
		t.Helper()
		var out, errb bytes.Buffer
		args = append(args, "--server", env.srv.URL, "--token", env.tokens[Role(who)])
		err := RunChangeCLI(t.Context(), args, &out, &errb)
		return out.String(), errb.String(), err
	}
	patch := filepath.Join(dir, "bypass.json")
	if err := os.WriteFile(patch, []byte(`{"bypass": {"add": ["payroll.example"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := run("nina", "open", "--patch", patch, "-t", "bypass payroll", "-r", "uploads break")
	if err != nil || !strings.Contains(out, "touches: bypass; approvals: netops:? secops:?") {
		t.Fatalf("open: %q %v", out, err)
	}
	id := strings.TrimSuffix(strings.Fields(out)[1], ":")
	if _, _, err := run("nina", "approve", id); !errors.Is(err, ErrForbidden) {
		t.Errorf("self-approve: %v, want forbidden", err)
	}
	if _, _, err := run("sam", "approve", id, "-m", "ok"); err != nil {
		t.Fatal(err)
	}
	if out, _, err = run("ned", "approve", id); err != nil || !strings.Contains(out, "state approved") {
		t.Fatalf("approve: %q %v", out, err)
	}
	if out, _, err = run("sam", "list", "--state", "approved"); err != nil || !strings.Contains(out, id) || !strings.Contains(out, "netops:ned secops:sam") {
		t.Fatalf("list: %q %v", out, err)
	}
	if out, _, err = run("nina", "apply", id); err != nil || !strings.Contains(out, "applied as version 2") {
		t.Fatalf("apply: %q %v", out, err)
	}
	// A full YAML draft that goes stale and conflicts.
	draft := filepath.Join(dir, "draft.yaml")
	if err := os.WriteFile(draft, []byte(strings.Replace(basePolicy, "{id: gambling, categories: [gambling], action: block}",
		"{id: gambling, categories: [gambling], action: warn}", 1)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err = run("sam", "open", draft, "-t", "warn on gambling")
	if err != nil {
		t.Fatalf("open draft: %v", err)
	}
	did := strings.TrimSuffix(strings.Fields(out)[1], ":")
	p := env.svc.Current().Policy.Clone()
	p.Rules[1].Monitor = true
	if _, err := env.svc.Put(t.Context(), admin, p, "monitor gambling"); err != nil {
		t.Fatal(err)
	}
	_, errOut, err := run("sam", "rebase", did)
	if !errors.Is(err, ErrConflict) || !strings.Contains(errOut, "conflict: rules gambling changed both here and on the live policy") {
		t.Errorf("rebase: %q %v", errOut, err)
	}
	if out, _, err = run("sam", "show", did); err != nil || !strings.Contains(out, "state stale") {
		t.Errorf("show: %q %v", out, err)
	}
	if out, _, err = run("admin", "edges"); err != nil || !strings.HasPrefix(out, "NAME") {
		t.Errorf("edges: %q %v", out, err)
	}
}
