package main

// Fault-harness scenarios of change requests and staged rollouts, on the
// same cluster (one redis-server, one control, two edge processes):
//
//   - ChangeApprovals: a netops bypass change needs a netops and a secops
//     approval and cannot be self-approved; a stale change is refused
//     until rebased, and a rebase over the same rule changed directly
//     reports the conflict; an admin's emergency change is flagged in the
//     audit log and counted.
//   - StagedRollout: a change staged on one location decides with the new
//     version only for clients there (127.0.0.2 is branch-a, 127.0.0.3 is
//     branch-b), over HTTP through both edges' proxies and over DNS to
//     both edges' filters; the observed effect comes from both edges'
//     heartbeats; abort restores the old version, promote makes it live
//     everywhere. Propagation to each edge is measured, not asserted.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const (
	clientA = "127.0.0.2" // location branch-a (testdata/fault/policy.yaml)
	clientB = "127.0.0.3" // location branch-b
)

// apiAs calls the control's API with token and decodes the answer into
// out whatever the status; it returns the status and the raw body.
func (c *faultCluster) apiAs(t *testing.T, token, method, path string, body, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+c.control.admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %.300s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode, string(b)
}

// people creates one token per person once: two netops, two secops.
func (c *faultCluster) people(t *testing.T) map[string]string {
	t.Helper()
	if c.tokens != nil {
		return c.tokens
	}
	c.tokens = map[string]string{"admin": faultToken}
	for _, p := range [][2]string{{"nina", "netops"}, {"ned", "netops"}, {"sam", "secops"}, {"sue", "secops"}} {
		var out struct {
			Token string `json:"token"`
		}
		if code, b := c.apiAs(t, faultToken, "POST", "/api/v1/tokens", map[string]any{"name": p[0], "role": p[1]}, &out); code != 201 {
			t.Fatalf("create token %s: %d %s", p[0], code, b)
		}
		c.tokens[p[0]] = out.Token
	}
	return c.tokens
}

// change is the part of a change request the scenarios read.
type change struct {
	ID             string `json:"id"`
	State          string `json:"state"`
	BaseVersion    int64  `json:"base_version"`
	AppliedVersion int64  `json:"applied_version"`
	Emergency      bool   `json:"emergency"`
	Stage          *struct {
		Version int64  `json:"version"`
		Outcome string `json:"outcome"`
	} `json:"stage"`
	Conflicts []struct {
		Section string `json:"section"`
		Name    string `json:"name"`
	} `json:"conflicts"`
	Code  string `json:"code"`
	Error string `json:"error"`
}

// step calls a change route as who and checks the status.
func (c *faultCluster) step(t *testing.T, who, method, path string, body any, want int) change {
	t.Helper()
	var ch change
	code, raw := c.apiAs(t, c.people(t)[who], method, path, body, &ch)
	if code != want {
		t.Fatalf("%s %s as %s: %d %.400s, want %d", method, path, who, code, raw, want)
	}
	return ch
}

// waitEdgesVersion waits until both edges serve version n (the
// cordon_policies_version gauge), bounded.
func (c *faultCluster) waitEdgesVersion(t *testing.T, n int64) {
	t.Helper()
	for _, e := range c.edges {
		ok := false
		for start := time.Now(); time.Since(start) < faultSafety; time.Sleep(10 * time.Millisecond) {
			if v, err := metric(e, "cordon_policies_version"); err == nil && int64(v) >= n {
				ok = true
				break
			}
		}
		if !ok {
			t.Fatalf("%s does not serve version %d within %v", e.name, n, faultSafety)
		}
	}
}

func (c *faultCluster) changeApprovals(t *testing.T) {
	c.people(t)
	// A netops bypass change: netops and secops must approve, never the author.
	ch := c.step(t, "nina", "POST", "/api/v1/changes", map[string]any{"title": "bypass the payroll SaaS", "reason": "uploads break",
		"patch": map[string]any{"bypass": map[string]any{"add": []string{"bypass.test"}}}}, 201)
	id := "/api/v1/changes/" + ch.ID
	if e := c.step(t, "nina", "POST", id+"/approve", nil, 403); !strings.Contains(e.Error, "author may not approve") {
		t.Errorf("self-approval: %q", e.Error)
	}
	c.step(t, "sam", "POST", id+"/approve", nil, 200)
	if e := c.step(t, "nina", "POST", id+"/apply", nil, 409); !strings.Contains(e.Error, "needs an approval from netops") {
		t.Errorf("apply with the secops approval only: %q", e.Error)
	}
	if got := c.step(t, "ned", "POST", id+"/approve", nil, 200); got.State != "approved" {
		t.Fatalf("after both approvals: %s", got.State)
	}
	applied := c.step(t, "nina", "POST", id+"/apply", nil, 200)
	c.waitEdgesVersion(t, applied.AppliedVersion)
	for _, e := range c.edges {
		if got := c.pacResult(t, e, "bypass.test"); got != "DIRECT" {
			t.Errorf("%s PAC for bypass.test = %q, want DIRECT", e.name, got)
		}
	}

	// Stale, then a conflicting rebase.
	stale := c.step(t, "sam", "POST", "/api/v1/changes", map[string]any{"title": "describe the mining rule",
		"patch": map[string]any{"rules": map[string]any{"update": []any{map[string]any{"id": "block-mining",
			"description": "cryptomining pools", "categories": []string{"cryptomining"}, "action": "block"}}}}}, 201)
	sid := "/api/v1/changes/" + stale.ID
	c.step(t, "sue", "POST", sid+"/approve", nil, 200)
	var pol struct {
		Number int64          `json:"number"`
		Policy map[string]any `json:"policy"`
	}
	if code, b := c.apiAs(t, faultToken, "GET", "/api/v1/policy", nil, &pol); code != 200 {
		t.Fatalf("GET policy: %d %s", code, b)
	}
	for _, r := range pol.Policy["rules"].([]any) {
		if m := r.(map[string]any); m["id"] == "block-mining" {
			m["description"] = "mining, edited directly"
		}
	}
	if code, b := c.apiAs(t, faultToken, "PUT", "/api/v1/policy", map[string]any{"comment": "direct edit", "policy": pol.Policy}, nil); code != 200 {
		t.Fatalf("direct edit: %d %s", code, b)
	}
	if e := c.step(t, "sam", "POST", sid+"/apply", nil, 409); !strings.Contains(e.Error, "stale") {
		t.Errorf("apply of a stale change: %q", e.Error)
	}
	e := c.step(t, "sam", "POST", sid+"/rebase", map[string]any{}, 409)
	if len(e.Conflicts) != 1 || e.Conflicts[0].Section != "rules" || e.Conflicts[0].Name != "block-mining" {
		t.Errorf("conflicting rebase: %+v", e)
	}
	if got := c.step(t, "sam", "GET", sid, nil, 200); got.State != "stale" || len(got.Conflicts) != 1 {
		t.Errorf("after the conflict: %s, %d conflicts", got.State, len(got.Conflicts))
	}
	c.step(t, "sam", "POST", sid+"/withdraw", map[string]any{"comment": "superseded"}, 200)

	// An admin's emergency change: no approvals, flagged and counted.
	em := c.step(t, "sam", "POST", "/api/v1/changes", map[string]any{"title": "block the outbreak",
		"patch": map[string]any{"lists": map[string]any{"add_entries": map[string]any{faultList: []string{"emergency.test"}}}}}, 201)
	if e := c.step(t, "sam", "POST", "/api/v1/changes/"+em.ID+"/apply", map[string]any{"emergency": true, "reason": "now"}, 403); e.Code != "forbidden" {
		t.Errorf("secops emergency: %+v", e)
	}
	got := c.step(t, "admin", "POST", "/api/v1/changes/"+em.ID+"/apply", map[string]any{"emergency": true, "reason": "active outbreak"}, 200)
	if got.State != "applied" || !got.Emergency {
		t.Errorf("emergency apply: %+v", got)
	}
	var page struct {
		Entries []struct {
			Action    string `json:"action"`
			Emergency bool   `json:"emergency"`
			Detail    string `json:"detail"`
		} `json:"entries"`
	}
	c.apiAs(t, faultToken, "GET", "/api/v1/audit?action=change.apply&target="+em.ID, nil, &page)
	if len(page.Entries) != 1 || !page.Entries[0].Emergency || !strings.Contains(page.Entries[0].Detail, "active outbreak") {
		t.Errorf("audit of the emergency change: %+v", page.Entries)
	}
	if n, err := metric(c.control, "cordon_policies_emergency_changes_total"); err != nil || n != 1 {
		t.Errorf("cordon_policies_emergency_changes_total on the control = %v (%v), want 1", n, err)
	}
	c.waitEdgesVersion(t, got.AppliedVersion)
	c.denied = append(c.denied, "emergency.test")
	for _, e := range c.edges {
		c.checkDecisions(t, e, c.baseTargets())
	}
}

// pacResult evaluates an edge's PAC for host in node.
func (c *faultCluster) pacResult(t *testing.T, p *faultProc, host string) string {
	t.Helper()
	return strings.TrimSpace(c.evalPAC(t, p, host))
}

// fromClient is an HTTP client through proxyAddr whose connections come
// from the loopback address src.
func (c *faultCluster) fromClient(src, proxyAddr string) *http.Client {
	key := src + "|" + proxyAddr
	c.clientsMu.Lock()
	defer c.clientsMu.Unlock()
	if hc, ok := c.clients[key]; ok {
		return hc
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 3 * time.Second}
	hc := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyAddr}), DialContext: d.DialContext,
			MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second},
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.clients[key] = hc
	return hc
}

// decision is what an edge did with one request from one client: blocked
// or not, and (HTTP) the policy version that decided, from the block page.
func (c *faultCluster) getFrom(src, proxyAddr, host string) (blocked bool, err error) {
	resp, err := c.fromClient(src, proxyAddr).Get("http://" + net.JoinHostPort(host, c.originPort) + "/")
	if err != nil {
		return false, err
	}
	c.count(host)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusForbidden:
		return true, nil
	case resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte("origin says hello")):
		return false, nil
	}
	return false, fmt.Errorf("proxy %s from %s: %s: %d %.120q", proxyAddr, src, host, resp.StatusCode, body)
}

// blockPageVersion is the policy version a block page names.
func (c *faultCluster) blockPageVersion(t *testing.T, src, proxyAddr, host string) int64 {
	t.Helper()
	resp, err := c.fromClient(src, proxyAddr).Get("http://" + net.JoinHostPort(host, c.originPort) + "/")
	if err != nil {
		t.Fatal(err)
	}
	c.count(host)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	const mark = "<dt>Policy version</dt><dd>"
	i := bytes.Index(body, []byte(mark))
	if resp.StatusCode != http.StatusForbidden || i < 0 {
		t.Fatalf("%s from %s: %d, no policy version on the page", host, src, resp.StatusCode)
	}
	var v int64
	fmt.Sscanf(string(body[i+len(mark):]), "%d", &v)
	return v
}

func (c *faultCluster) resolveFrom(src, addr, host string) (blocked bool, err error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(host), dns.TypeA)
	cl := &dns.Client{Net: "udp", Timeout: 3 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}, Timeout: 3 * time.Second}}
	r, _, err := cl.Exchange(m, addr)
	if err != nil {
		return false, err
	}
	c.count(host)
	switch {
	case r.Rcode == dns.RcodeNameError:
		return true, nil
	case r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0:
		return false, nil
	}
	return false, fmt.Errorf("dns %s from %s: %s: %s", addr, src, host, dns.RcodeToString[r.Rcode])
}

// untilFrom polls edge p with requests from src until host's decision is
// blocked (over HTTP and DNS), counting from since.
func (c *faultCluster) untilFrom(p *faultProc, src, host string, blocked bool, since time.Time) propagation {
	pr := propagation{edge: p.name, http: -1, dns: -1}
	for i := 0; i < 5000 && time.Since(since) < faultSafety; i++ {
		if pr.http < 0 {
			if b, err := c.getFrom(src, p.proxy, host); err == nil && b == blocked {
				pr.http = time.Since(since)
			}
		}
		if pr.dns < 0 {
			if b, err := c.resolveFrom(src, p.dns, host); err == nil && b == blocked {
				pr.dns = time.Since(since)
			}
		}
		if pr.http >= 0 && pr.dns >= 0 {
			pr.ok = true
			return pr
		}
		time.Sleep(5 * time.Millisecond)
	}
	return pr
}

// expectFrom checks that requests from src to both edges get blocked.
func (c *faultCluster) expectFrom(t *testing.T, src, host string, blocked bool) {
	t.Helper()
	for _, e := range c.edges {
		for i := 0; i < 3; i++ {
			if b, err := c.getFrom(src, e.proxy, host); err != nil || b != blocked {
				t.Errorf("%s HTTP from %s for %s: blocked=%v (%v), want %v", e.name, src, host, b, err, blocked)
			}
			if b, err := c.resolveFrom(src, e.dns, host); err != nil || b != blocked {
				t.Errorf("%s DNS from %s for %s: blocked=%v (%v), want %v", e.name, src, host, b, err, blocked)
			}
		}
	}
}

// propagate waits on every edge at once.
func (c *faultCluster) propagate(t *testing.T, src, host string, blocked bool, since time.Time, what string) []propagation {
	t.Helper()
	props := make([]propagation, len(c.edges))
	var wg sync.WaitGroup
	for i, e := range c.edges {
		wg.Add(1)
		go func() {
			defer wg.Done()
			props[i] = c.untilFrom(e, src, host, blocked, since)
		}()
	}
	wg.Wait()
	for _, p := range props {
		if !p.ok {
			t.Errorf("%s: %s not seen from %s within %v (http %v, dns %v)", p.edge, what, src, faultSafety, p.http, p.dns)
		}
	}
	return props
}

func (c *faultCluster) stagedRollout(t *testing.T) {
	const host = "staged.test"
	c.people(t)
	c.expectFrom(t, clientA, host, false)
	c.expectFrom(t, clientB, host, false)
	ch := c.step(t, "sam", "POST", "/api/v1/changes", map[string]any{"title": "deny staged.test", "reason": "try at branch-a first",
		"patch": map[string]any{"lists": map[string]any{"add_entries": map[string]any{faultList: []string{host}}}}}, 201)
	id := "/api/v1/changes/" + ch.ID
	c.step(t, "sue", "POST", id+"/approve", nil, 200)
	stage := map[string]any{"stage": map[string]any{"locations": []string{"branch-a"}}}

	start := time.Now()
	staged := c.step(t, "sam", "POST", id+"/apply", stage, 200)
	if staged.State != "staged" || staged.Stage == nil {
		t.Fatalf("staged: %+v", staged)
	}
	c.logProps(t, "StagedRollout", fmt.Sprintf("stage of version %d on branch-a (client %s)", staged.Stage.Version, clientA),
		c.propagate(t, clientA, host, true, start, "the stage"))
	c.expectFrom(t, clientA, host, true)
	c.expectFrom(t, clientB, host, false) // the rest keeps the live version
	for _, e := range c.edges {           // the block page names the deciding version
		if v := c.blockPageVersion(t, clientA, e.proxy, host); v != staged.Stage.Version {
			t.Errorf("%s block page from %s: policy version %d, want the staged %d", e.name, clientA, v, staged.Stage.Version)
		}
	}

	// The observed effect: both edges' traffic, staged beside the rest.
	var eff struct {
		StagedVersion int64    `json:"staged_version"`
		Edges         []string `json:"edges"`
		Staged        struct {
			Requests, Blocked int64
			BlockRate         float64 `json:"block_rate"`
		} `json:"staged"`
		Rest struct {
			Requests, Blocked int64
		} `json:"rest"`
	}
	ok := false
	for w := time.Now(); time.Since(w) < faultSafety; time.Sleep(100 * time.Millisecond) {
		eff.Edges = nil
		c.apiAs(t, faultToken, "GET", id+"/effect", nil, &eff)
		if len(eff.Edges) == 2 && eff.Staged.Blocked >= 6 && eff.Rest.Requests >= 6 {
			ok = true
			break
		}
	}
	if !ok || eff.StagedVersion != staged.Stage.Version {
		t.Errorf("observed effect after traffic on both edges: %+v", eff)
	}
	c.res.note("StagedRollout", fmt.Sprintf("observed effect from %v: staged %d requests (%d blocked, block rate %.2f), rest %d requests",
		eff.Edges, eff.Staged.Requests, eff.Staged.Blocked, eff.Staged.BlockRate, eff.Rest.Requests))
	var edges struct {
		Edges []struct {
			Name          string `json:"name"`
			StagedVersion int64  `json:"staged_version"`
			Stale         bool   `json:"stale"`
		} `json:"edges"`
	}
	// Edges report what they serve in their heartbeat (every 2 s): wait
	// for both to report the staged version, for at most three beats.
	regOK := func() bool {
		return len(edges.Edges) == 2 && edges.Edges[0].Name == "edge-a" && !edges.Edges[0].Stale && !edges.Edges[1].Stale &&
			edges.Edges[0].StagedVersion == staged.Stage.Version && edges.Edges[1].StagedVersion == staged.Stage.Version
	}
	for deadline := time.Now().Add(6 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c.apiAs(t, faultToken, "GET", "/api/v1/edges", nil, &edges)
		if regOK() || time.Now().After(deadline) {
			break
		}
	}
	if !regOK() {
		t.Errorf("edge registry after three heartbeats: %+v, want edge-a and edge-b both reporting staged version %d", edges.Edges, staged.Stage.Version)
	}

	// Abort: branch-a is back on the live version.
	start = time.Now()
	aborted := c.step(t, "sam", "POST", id+"/abort", map[string]any{"reason": "measure the abort"}, 200)
	if aborted.State != "approved" || aborted.Stage == nil || aborted.Stage.Outcome != "aborted" {
		t.Errorf("abort: %+v", aborted)
	}
	c.logProps(t, "StagedRollout", "abort (old version back on branch-a)", c.propagate(t, clientA, host, false, start, "the abort"))
	c.expectFrom(t, clientA, host, false)

	// Stage again, then promote: live everywhere.
	c.step(t, "sam", "POST", id+"/apply", stage, 200)
	c.propagate(t, clientA, host, true, time.Now(), "the second stage")
	start = time.Now()
	promoted := c.step(t, "sam", "POST", id+"/promote", nil, 200)
	if promoted.State != "applied" || promoted.AppliedVersion != staged.Stage.Version {
		t.Errorf("promote: %+v", promoted)
	}
	c.logProps(t, "StagedRollout", fmt.Sprintf("promote of version %d (client %s, outside the stage)", promoted.AppliedVersion, clientB),
		c.propagate(t, clientB, host, true, start, "the promote"))
	c.expectFrom(t, clientA, host, true)
	c.expectFrom(t, clientB, host, true)
	c.denied = append(c.denied, host)
	for _, e := range c.edges {
		c.checkDecisions(t, e, c.baseTargets())
	}
}
