package main

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// TestConsoleWiring: the console is served at /ui/ on the admin listener,
// a sign-in there also opens the report pages, and /reports/login sends
// browsers to the console's sign-in.
func TestConsoleWiring(t *testing.T) {
	tg := startGateway(t, nil)
	base := "http://" + tg.adminLn.Addr().String()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string, accept string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(b)
	}
	if res, _ := get("/reports", "text/html"); res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/ui/login?next=%2Freports" {
		t.Fatalf("report page signed out = %d %s, want the console sign-in", res.StatusCode, res.Header.Get("Location"))
	}
	if res, _ := get("/reports/login?next=/reports/users/alice", ""); res.Header.Get("Location") != "/ui/login?next=%2Freports%2Fusers%2Falice" {
		t.Fatalf("/reports/login = %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if res, _ := get("/ui", ""); res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/ui/" {
		t.Fatalf("/ui = %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	res, err := c.PostForm(base+"/ui/login", url.Values{"token": {tg.token}, "next": {"/reports"}})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/reports" {
		t.Fatalf("console sign-in = %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	if res, body := get("/reports", "text/html"); res.StatusCode != http.StatusOK || !strings.Contains(body, "Traffic overview") || !strings.Contains(body, `href="/ui/policy"`) {
		t.Fatalf("report page with a console session = %d, want the page with the console navigation", res.StatusCode)
	}
	res, body := get("/ui/", "text/html")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, "Feed health") || !strings.Contains(body, "blp-crypto") || !strings.Contains(body, "Requests per hour") {
		t.Fatalf("console overview = %d\n%s", res.StatusCode, body)
	}
}
