package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMainUsageErrors(t *testing.T) {
	urls := writeFile(t, "urls.txt", "www.example.com/1k\n")
	nameFile := writeFile(t, "names.txt", "www.example.com\n")
	empty := writeFile(t, "empty.txt", "# nothing\n\n")
	bad := writeFile(t, "bad.txt", "www.example.com/1k\nftp://x.test/\n")
	tests := []struct {
		name string
		args []string
		want string // substring of the error
		is   error
	}{
		{"no command", nil, "missing command", ErrUsage},
		{"unknown command", []string{"ftp"}, `unknown command "ftp"`, ErrUsage},
		{"http no urls", []string{"http"}, "--urls FILE is required", ErrUsage},
		{"http unknown flag", []string{"http", "--urls", urls, "--bogus"}, "flag provided but not defined: -bogus", ErrUsage},
		{"http bad duration", []string{"http", "--urls", urls, "--duration", "ten"}, `invalid value "ten" for flag -duration`, ErrUsage},
		{"http zero connections", []string{"http", "--urls", urls, "--connections", "0"}, "--connections 0: want at least 1", ErrUsage},
		{"http negative rate", []string{"http", "--urls", urls, "--rate", "-5"}, "--rate -5: want >= 0", ErrUsage},
		{"http zero requests", []string{"http", "--urls", urls, "--requests", "0"}, "--requests 0: want at least 1", ErrUsage},
		{"http user without colon", []string{"http", "--urls", urls, "--user", "alice"}, `--user "alice": want user:password`, ErrUsage},
		{"http connect-to with proxy", []string{"http", "--urls", urls, "--proxy", "127.0.0.1:3128", "--connect-to", "127.0.0.1:1"}, "--connect-to is for direct runs", ErrUsage},
		{"http user direct", []string{"http", "--urls", urls, "--proxy", "", "--user", "a:b"}, "--user needs a proxy", ErrUsage},
		{"http missing file", []string{"http", "--urls", "/nonexistent/urls.txt"}, "no such file", ErrUsage},
		{"http empty file", []string{"http", "--urls", empty}, "no URL lines", ErrNoTargets},
		{"http bad line", []string{"http", "--urls", bad}, `urls line 2 "ftp://x.test/": scheme "ftp"`, ErrUsage},
		{"http bad proxy", []string{"http", "--urls", urls, "--proxy", "nocolon"}, `proxy "nocolon": want host:port`, ErrConfig},
		{"http bad ca", []string{"http", "--urls", urls, "--ca", urls}, "no PEM certificate", ErrUsage},
		{"http positional", []string{"http", "--urls", urls, "extra"}, `unexpected argument "extra"`, ErrUsage},
		{"dns no names", []string{"dns"}, "--names FILE is required", ErrUsage},
		{"dns bad server", []string{"dns", "--names", nameFile, "--server", "localhost"}, `--server "localhost": want host:port`, ErrUsage},
		{"dns negative hot", []string{"dns", "--names", nameFile, "--hot", "-1"}, "--hot -1: want >= 0", ErrUsage},
		{"dns zero concurrency", []string{"dns", "--names", nameFile, "--concurrency", "0"}, "--concurrency 0: want at least 1", ErrUsage},
		{"dns bad qps", []string{"dns", "--names", nameFile, "--qps", "x"}, `invalid value "x" for flag -qps`, ErrUsage},
		{"dns bad type", []string{"dns", "--names", writeFile(t, "n2.txt", "a.test BOGUS\n")}, `unknown record type "BOGUS"`, ErrUsage},
		{"origin bad a", []string{"origin", "--a", "::1"}, `--a "::1": want an IPv4 address`, ErrUsage},
		{"origin nothing", []string{"origin", "--http", "", "--https", "", "--dns", ""}, "nothing to serve", ErrConfig},
		{"origin bad addr", []string{"origin", "--http", "18080"}, `http_addr "18080": want host:port`, ErrConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := Main(t.Context(), tt.args, &stdout, &stderr)
			if err == nil {
				t.Fatalf("Main(%q) = nil, want an error containing %q", tt.args, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Main(%q) = %q, want it to contain %q", tt.args, err, tt.want)
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("Main(%q) = %v, want errors.Is %v", tt.args, err, tt.is)
			}
			if stdout.Len() != 0 {
				t.Errorf("Main(%q) wrote to stdout: %q", tt.args, stdout.String())
			}
		})
	}
}

func TestMainHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"http", "-h"}, {"dns", "--help"}, {"origin", "-h"}} {
		var stdout, stderr bytes.Buffer
		if err := Main(t.Context(), args, &stdout, &stderr); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Main(%q) = %v, want flag.ErrHelp", args, err)
		}
		if !strings.Contains(stderr.String(), "usage: cordon loadtest") {
			t.Errorf("Main(%q) usage = %q", args, stderr.String())
		}
	}
}

func TestMainRunsAgainstOrigin(t *testing.T) {
	o := startOrigin(t, nil)
	ca := writeFile(t, "ca.pem", string(o.CACertPEM()))
	urls := writeFile(t, "urls.txt", "# popular\nwww.example.com/1k\nstatic.example.net/64k\n")
	nameFile := writeFile(t, "names.txt", "www.example.com\nstatic.example.net AAAA\n")
	_, httpsPort, _ := strings.Cut(o.HTTPSAddr(), ":")
	t.Run("http json", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		args := []string{"http", "--connect-to", o.HTTPSAddr(), "--https", "--https-port", httpsPort, "--ca", ca,
			"--urls", urls, "--connections", "3", "--requests", "60", "--duration", "20s", "--json"}
		if err := Main(t.Context(), args, &stdout, &stderr); err != nil {
			t.Fatalf("Main: %v (stderr %s)", err, stderr.String())
		}
		var res HTTPResult
		if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, stdout.String())
		}
		if res.Requests != 60 || res.Status[200] != 60 || len(res.Errors) != 0 || res.Target != "direct" {
			t.Errorf("result = %+v, want 60 answered 200 direct", res)
		}
	})
	t.Run("dns table", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		args := []string{"dns", "--server", o.DNSAddr(), "--names", nameFile, "--concurrency", "2", "--queries", "50", "--tcp"}
		if err := Main(t.Context(), args, &stdout, &stderr); err != nil {
			t.Fatalf("Main: %v (stderr %s)", err, stderr.String())
		}
		for _, want := range []string{`over tcp`, `answers\s+50,`, `NOERROR: 50`, `errors\s+none`, `\nquery\s+50\s`} {
			if !regexp.MustCompile(want).MatchString(stdout.String()) {
				t.Errorf("table lacks %s:\n%s", want, stdout.String())
			}
		}
	})
}

func TestMainOrigin(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	caOut := filepath.Join(t.TempDir(), "ca.pem")
	done := make(chan error, 1)
	go func() {
		done <- Main(ctx, []string{"origin", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--dns", "127.0.0.1:0", "--ca-out", caOut}, &stdout, &stderr)
	}()
	re := regexp.MustCompile(`origin ready: http=(\S+) https=(\S+) dns=(\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	var m []string
	for m == nil && time.Now().Before(deadline) {
		m = re.FindStringSubmatch(stdout.String())
		time.Sleep(10 * time.Millisecond)
	}
	if m == nil {
		cancel()
		t.Fatalf("no ready line; stdout %q stderr %q", stdout.String(), stderr.String())
	}
	urls := writeFile(t, "urls.txt", "http://shop.example/1k\n")
	var out, errOut bytes.Buffer
	if err := Main(t.Context(), []string{"http", "--connect-to", m[1], "--urls", urls, "--requests", "5", "--connections", "1", "--json"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"200": 5`) {
		t.Errorf("http through the origin command: %s", out.String())
	}
	if pem, err := os.ReadFile(caOut); err != nil || !bytes.Contains(pem, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("--ca-out file: %v %q", err, pem)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("origin returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("origin did not stop after cancel")
	}
}
