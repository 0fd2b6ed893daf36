package loadtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCompareScript checks that compare.sh parses and keeps the contract
// the README describes: the Cordon command is a variable at the top, every
// load run is bounded by timeout, results go to the gitignored folder.
func TestCompareScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	if out, err := exec.Command(bash, "-n", "compare.sh").CombinedOutput(); err != nil {
		t.Fatalf("bash -n compare.sh: %v\n%s", err, out)
	}
	b, err := os.ReadFile("compare.sh")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	for _, want := range []string{
		`CORDON_CMD=${CORDON_CMD:-"go run ./cmd/cordon serve --config loadtest/cordon-bench.yaml"}`,
		`OUT=loadtest/results/$STAMP`,
		`timeout "$RUN_TIMEOUT" $LOADTEST http`,
		`timeout "$RUN_TIMEOUT" $LOADTEST dns`,
		`trap cleanup EXIT`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("compare.sh lacks %q", want)
		}
	}
	if st, err := os.Stat("compare.sh"); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("compare.sh is not executable: %v", err)
	}
}
