package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cordon-gw/cordon/internal/testutil"
)

// TestRunBuildsSeededTraffic draws from the repository's own data (the
// bundled lists and the OpenDNS top 10,000), the default.
func TestRunBuildsSeededTraffic(t *testing.T) {
	src, err := repoSources()
	if err != nil {
		t.Fatal(err)
	}
	checkTraffic(t, nil, src, "OpenDNS top-10k")
}

// TestRunWithDataFolder draws from a --data folder laid out like the
// public feed snapshot, built here from the committed samples.
func TestRunWithDataFolder(t *testing.T) {
	data := t.TempDir()
	for _, rel := range blockedFeeds {
		copyFile(t, testutil.Data(t, rel), filepath.Join(data, rel))
	}
	// A popularity list in the Umbrella file's place and format.
	copyFile(t, testutil.Data(t, "opendns/opendns-random-domains.txt"), filepath.Join(data, "umbrella/umbrella-top-100k.txt"))
	checkTraffic(t, []string{"--data", data}, dataSources(data), "Umbrella top-100k")
}

func checkTraffic(t *testing.T, args []string, src sources, popularName string) {
	var hostsFile string
	build := func() (urls, names []string) {
		out := t.TempDir()
		var stdout, stderr bytes.Buffer
		if err := run(append(args, "--out", out, "--urls", "2000", "--names", "3000", "--blocked-share", "0.2"), &stdout, &stderr); err != nil {
			t.Fatalf("run: %v (%s)", err, stderr.String())
		}
		hostsFile = filepath.Join(out, "hosts")
		b, err := os.ReadFile(filepath.Join(out, "urls.txt"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), popularName+" names by Zipf") {
			t.Errorf("urls.txt header does not name %q: %.200s", popularName, b)
		}
		return lines(t, filepath.Join(out, "urls.txt")), lines(t, filepath.Join(out, "names.txt"))
	}
	urls, names := build()
	if len(urls) != 2000 || len(names) != 3000 {
		t.Fatalf("got %d URLs and %d names, want 2000 and 3000", len(urls), len(names))
	}
	blocked, err := readBlocked(src)
	if err != nil {
		t.Fatal(err)
	}
	nBlocked, n64k := 0, 0
	for _, u := range urls {
		host, path, _ := strings.Cut(u, "/")
		if blocked[host] {
			nBlocked++
		}
		if path == "64k" {
			n64k++
		}
	}
	// 20 % ± 3 points of 2000 lines are listed names; 10 % ± 3 are 64 KiB.
	if nBlocked < 340 || nBlocked > 460 || n64k < 140 || n64k > 260 {
		t.Errorf("blocked, 64k URL lines = %d, %d; want about 400 and 200", nBlocked, n64k)
	}
	inHosts := make(map[string]bool)
	for _, l := range lines(t, hostsFile) {
		ip, host, _ := strings.Cut(l, " ")
		if ip != "127.0.0.1" {
			t.Errorf("hosts line %q: want 127.0.0.1", l)
		}
		inHosts[host] = true
	}
	for _, u := range urls {
		if host, _, _ := strings.Cut(u, "/"); !inHosts[host] {
			t.Errorf("URL host %q missing from hosts", host)
		}
	}
	nAAAA := 0
	for _, n := range names {
		if strings.HasSuffix(n, " AAAA") {
			nAAAA++
		}
	}
	if nAAAA < 450 || nAAAA > 750 {
		t.Errorf("AAAA lines = %d, want about 600", nAAAA)
	}
	urls2, names2 := build()
	if strings.Join(urls, "\n") != strings.Join(urls2, "\n") || strings.Join(names, "\n") != strings.Join(names2, "\n") {
		t.Error("two runs with the same seed wrote different files")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--urls", "0"}, {"--blocked-share", "1.5"}, {"extra"}, {"--data", t.TempDir()}} {
		var stdout, stderr bytes.Buffer
		if err := run(append(args, "--out", t.TempDir()), &stdout, &stderr); err == nil {
			t.Errorf("run(%q) = nil, want an error", args)
		}
	}
}

func TestHostName(t *testing.T) {
	for in, want := range map[string]string{
		"WWW.Example.com.": "www.example.com", "1.2.3.4": "", "localhost": "", "*.ads.test": "", "_dmarc.x.test": "",
		"-bad.test": "", "ok-1.test": "ok-1.test",
	} {
		got, ok := hostName(in)
		if got != want || ok != (want != "") {
			t.Errorf("hostName(%q) = %q, %v, want %q", in, got, ok, want)
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, ";") {
			out = append(out, l)
		}
	}
	return out
}
