package loadtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/internal/testutil"
)

// startSquid runs a real Squid as a pure forward proxy (no cache) whose
// hosts_file sends every name in hosts to 127.0.0.1, with CONNECT allowed to
// the origin's HTTPS port. It skips the test when squid is not installed
// (it is a peer we measure against, not a dependency of Cordon), unless
// CI=true.
func startSquid(t *testing.T, o *Origin, hosts []string) string {
	t.Helper()
	bin, err := exec.LookPath("squid")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/squid"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("squid not installed")
			}
			t.Skip("squid not installed")
		}
	}
	dir := t.TempDir()
	// Squid started as root drops to its own user, which must write here.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	var hf strings.Builder
	for _, h := range hosts {
		hf.WriteString("127.0.0.1 " + h + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testutil.FreePort(t)))
	_, httpPort, _ := net.SplitHostPort(o.HTTPAddr())
	_, httpsPort, _ := net.SplitHostPort(o.HTTPSAddr())
	conf := fmt.Sprintf(`http_port %[1]s
pid_filename %[2]s/squid.pid
cache_log %[2]s/cache.log
access_log none
cache deny all
cache_mem 0 MB
coredump_dir %[2]s
hosts_file %[2]s/hosts
acl SSL_ports port %[4]s
acl Safe_ports port %[3]s %[4]s
acl CONNECT method CONNECT
http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports
http_access allow localhost
http_access deny all
shutdown_lifetime 0 seconds
`, addr, dir, httpPort, httpsPort)
	confPath := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-N", "-f", confPath)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
			t.Fatalf("squid did not listen on %s within 20s; cache.log:\n%s", addr, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRunHTTPThroughSquid checks the generator against a real forward
// proxy: absolute-form GETs and CONNECT tunnels then TLS.
func TestRunHTTPThroughSquid(t *testing.T) {
	o := startOrigin(t, nil)
	hosts := []string{"www.example.com", "cdn.example.net", "api.example.org"}
	squid := startSquid(t, o, hosts)
	_, httpPort, _ := net.SplitHostPort(o.HTTPAddr())
	_, httpsPort, _ := net.SplitHostPort(o.HTTPSAddr())
	for _, https := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[https], func(t *testing.T) {
			ts, err := ParseURLs(strings.NewReader("www.example.com/1k\ncdn.example.net/64k\napi.example.org/1k\n"),
				URLOptions{HTTPS: https, HTTPPort: httpPort, HTTPSPort: httpsPort})
			if err != nil {
				t.Fatal(err)
			}
			cfg := HTTPDefaults()
			cfg.Proxy = squid
			cfg.Targets = ts
			cfg.RootCAs = caPool(t, o)
			cfg.Connections = 4
			cfg.MaxRequests = 90
			cfg.Duration = 30 * time.Second
			res, err := RunHTTP(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != 90 || res.Status[200] != 90 || res.ErrorCount() != 0 {
				t.Fatalf("Requests, Status, Errors = %d, %v, %v, want 90 answered 200", res.Requests, res.Status, res.Errors)
			}
			if want := uint64(60*1024 + 30*65536); res.BodyBytes != want {
				t.Errorf("BodyBytes = %d, want %d", res.BodyBytes, want)
			}
			if https && (res.Tunnels == 0 || res.TunnelSetup == nil || res.TLSHandshake.Count != res.Tunnels) {
				t.Errorf("Tunnels = %d, TunnelSetup %+v, TLSHandshake %+v: want tunnels with a handshake each", res.Tunnels, res.TunnelSetup, res.TLSHandshake)
			}
			if !https && res.Dials > uint64(cfg.Connections)+res.Retries {
				t.Errorf("Dials = %d for %d keep-alive connections (%d resends)", res.Dials, cfg.Connections, res.Retries)
			}
		})
	}
}
