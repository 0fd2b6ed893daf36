package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Command returns the path of the program name (a test's real part:
// chromium, node, …). When it is missing the test is skipped, except
// under CI=true, where the set-up must have installed it and the test
// fails.
func Command(tb testing.TB, name string) string {
	tb.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s not installed: %v", name, err)
		}
		tb.Skipf("%s not installed: %v", name, err)
	}
	return bin
}
