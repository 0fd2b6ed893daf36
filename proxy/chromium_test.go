package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"

	"github.com/cordon-gw/cordon/internal/testutil"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the block and warn page screenshots to testdata/blockpage.png and warnpage.png")

// chromium runs headless Chromium with the proxy's PAC file and returns
// its stdout (extra args select --dump-dom or --screenshot).
func chromium(t *testing.T, h *harness, args ...string) string {
	t.Helper()
	bin := testutil.Command(t, "chromium")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(),
		"--proxy-pac-url=http://" + h.addr + "/proxy.pac",
		// Chromium never proxies loopback by default; the test names
		// resolve to loopback only inside the proxy, but keep the rule
		// explicit.
		"--proxy-bypass-list=<-loopback>",
	}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

// TestChromiumWithPAC loads an allowed page and a blocked one in a real
// browser configured only with the proxy's PAC URL.
func TestChromiumWithPAC(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	h := newHarness(t, harnessOpt{cfg: Config{SupportContact: "it-help@example.com"}})

	dom := chromium(t, h, "--dump-dom", h.httpURL("allowed.test", "/welcome"))
	if !strings.Contains(dom, "hello from allowed.test") {
		t.Fatalf("allowed page through the PAC = %q", dom)
	}
	h.events.wait(t, func(ev *policies.AccessEvent) bool {
		return ev.Host == "allowed.test" && ev.Path == "/welcome" && ev.Status == 200
	})

	dom = chromium(t, h, "--dump-dom", h.httpURL("casino.test", "/roulette"))
	for _, want := range []string{"This site is blocked", "gambling", "block-gambling", "Request a review"} {
		if !strings.Contains(dom, want) {
			t.Errorf("block page in Chromium lacks %q:\n%s", want, dom)
		}
	}

	shot := filepath.Join(t.TempDir(), "blockpage.png")
	chromium(t, h, "--screenshot="+shot, "--window-size=1100,900", h.httpURL("casino.test", "/roulette"))
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10000 {
		t.Fatalf("screenshot is not a plausible PNG (%d bytes)", len(png))
	}
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("testdata", "blockpage.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		warn := filepath.Join(t.TempDir(), "warnpage.png")
		chromium(t, h, "--screenshot="+warn, "--window-size=1100,900", h.httpURL("social.test", "/timeline"))
		b, err := os.ReadFile(warn)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata", "warnpage.png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChromiumInspectedHTTPS: with TLS inspection on, Chromium gets the
// real block page for an HTTPS site and the decrypted page for an allowed
// one. Chromium trusts the proxy's leaf key by SPKI pin (instead of
// installing the CA in an NSS database).
func TestChromiumInspectedHTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	h, _, _ := inspectHarness(t)
	spki, err := x509.MarshalPKIXPublicKey(h.srv.mitm.leafKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(spki)
	pin := "--ignore-certificate-errors-spki-list=" + base64.StdEncoding.EncodeToString(sum[:])

	dom := chromium(t, h, pin, "--dump-dom", h.httpsURL("allowed.test", "/secure-page"))
	if !strings.Contains(dom, "hello from allowed.test:") || !strings.Contains(dom, "/secure-page") {
		t.Fatalf("allowed HTTPS page through inspection = %q", dom)
	}
	dom = chromium(t, h, pin, "--dump-dom", h.httpsURL("casino.test", "/roulette"))
	if !strings.Contains(dom, "This site is blocked") || !strings.Contains(dom, "https://casino.test") {
		t.Fatalf("blocked HTTPS page through inspection lacks the block page:\n%s", dom)
	}
}
