package testutil

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// repoRoot is the repository root, found from this source file's path
// (tests run from their package directory, so the working directory
// says nothing about where the data is).
var repoRoot = func() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

// RepoPath returns the absolute path of rel (slash-separated) inside the
// repository. The test fails when the source location is unknown (a
// binary built with -trimpath).
func RepoPath(t testing.TB, rel string) string {
	t.Helper()
	if repoRoot == "" {
		t.Fatal("testutil: repository root unknown (built with -trimpath?)")
	}
	return filepath.Join(repoRoot, filepath.FromSlash(rel))
}

// Data returns the path of a committed sample of real public feed data
// under internal/testutil/testdata (layout and sources in its
// ATTRIBUTION.md), e.g. "urlhaus/hosts" or the folder "ut1/blacklists".
// A sample stored compressed (rel + ".gz") is decompressed into a
// temporary folder of the test first, so callers always get the original
// bytes. The test fails when the sample does not exist.
func Data(t testing.TB, rel string) string {
	t.Helper()
	p := RepoPath(t, "internal/testutil/testdata/"+rel)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	b := gunzipFile(t, p+".gz")
	out := filepath.Join(t.TempDir(), filepath.Base(p))
	if err := os.WriteFile(out, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// ReadData returns the content of a committed sample (see Data).
func ReadData(t testing.TB, rel string) []byte {
	t.Helper()
	p := RepoPath(t, "internal/testutil/testdata/"+rel)
	if b, err := os.ReadFile(p); err == nil {
		return b
	}
	return gunzipFile(t, p+".gz")
}

// Bundled returns the decompressed content of a bundled default list,
// categorizer/bundled/<file> (the lists named in its manifest.json).
func Bundled(t testing.TB, file string) []byte {
	t.Helper()
	return gunzipFile(t, RepoPath(t, "categorizer/bundled/"+file))
}

func gunzipFile(t testing.TB, path string) []byte {
	t.Helper()
	z, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("testutil: test data: %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("testutil: %s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("testutil: %s: %v", path, err)
	}
	return b
}
