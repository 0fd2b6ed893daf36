package proxy

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{
		"Connection":          {"keep-alive, X-Private", "Upgrade"},
		"X-Private":           {"1"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Authorization": {"Basic x"},
		"Proxy-Connection":    {"keep-alive"},
		"Te":                  {"trailers"},
		"Upgrade":             {"websocket"},
		"X-Kept":              {"yes"},
	}
	removeHopHeaders(h)
	for _, k := range []string{"X-Private", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te"} {
		if h.Get(k) != "" {
			t.Errorf("%s survived", k)
		}
	}
	if h.Get("Connection") != "Upgrade" || h.Get("Upgrade") != "websocket" || h.Get("X-Kept") != "yes" {
		t.Errorf("after removeHopHeaders: %v", h)
	}
	plain := http.Header{"Connection": {"close"}, "Upgrade": {"h2c"}}
	removeHopHeaders(plain)
	if plain.Get("Upgrade") != "" || plain.Get("Connection") != "" {
		t.Errorf("Upgrade without Connection: upgrade kept: %v", plain)
	}
}

func TestViaAndLoop(t *testing.T) {
	h := http.Header{}
	addVia(h, 1, 1, "cordon")
	if h.Get("Via") != "1.1 cordon" {
		t.Errorf("Via = %q", h.Get("Via"))
	}
	h2 := http.Header{"Via": {"1.0 squid"}}
	addVia(h2, 1, 0, "edge-7")
	if h2.Get("Via") != "1.0 squid, 1.0 edge-7" {
		t.Errorf("Via = %q", h2.Get("Via"))
	}
	if !viaLoop(http.Header{"Via": {"1.1 a, 1.1 Cordon"}}, "cordon") || viaLoop(http.Header{"Via": {"1.1 cordonx"}}, "cordon") {
		t.Errorf("viaLoop wrong")
	}
	off := http.Header{}
	addVia(off, 1, 1, "off")
	if off.Get("Via") != "" || viaLoop(http.Header{"Via": {"1.1 off"}}, "off") {
		t.Errorf("via off still acts")
	}
}

func TestForwardedFor(t *testing.T) {
	client := netip.MustParseAddr("10.1.2.3")
	for _, tc := range []struct{ mode, in, want string }{
		{"strip", "1.1.1.1", ""},
		{"append", "1.1.1.1", "1.1.1.1, 10.1.2.3"},
		{"append", "", "10.1.2.3"},
		{"keep", "1.1.1.1", "1.1.1.1"},
	} {
		h := http.Header{}
		if tc.in != "" {
			h.Set("X-Forwarded-For", tc.in)
		}
		setForwardedFor(h, tc.mode, client)
		if got := h.Get("X-Forwarded-For"); got != tc.want {
			t.Errorf("setForwardedFor(%s, %q) = %q, want %q", tc.mode, tc.in, got, tc.want)
		}
	}
}

func TestLoopRefused(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	req, _ := http.NewRequest("GET", h.httpURL("allowed.test", "/"), nil)
	req.Header.Set("Via", "1.1 cordon")
	resp, err := h.client(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusLoopDetected {
		t.Errorf("looping request = %d, want 508", resp.StatusCode)
	}
}
