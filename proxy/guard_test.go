package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// mapResolver resolves from a fixed table; unknown names fail.
type mapResolver map[string][]netip.Addr

func (m mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := m[host]; ok {
		return append([]netip.Addr(nil), a...), nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestGuardRefusal(t *testing.T) {
	g, err := newGuard(Defaults(), nil)
	if err != nil {
		t.Fatal(err)
	}
	g.addListener(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 3128})
	g.addListener(&net.TCPAddr{IP: net.IPv4zero, Port: 3129})
	for _, tc := range []struct {
		addr string
		port uint16
		want string
	}{
		{"127.0.0.1", 80, "loopback"},
		{"127.8.9.10", 80, "loopback"},
		{"::1", 80, "loopback"},
		{"::ffff:127.0.0.1", 80, "loopback"},
		{"169.254.169.254", 80, "link-local"},
		{"fe80::1", 80, "link-local"},
		{"10.0.0.1", 443, "private"},
		{"172.16.5.4", 443, "private"},
		{"192.168.1.1", 443, "private"},
		{"fd00::1", 443, "private"},
		{"100.64.0.1", 443, "shared"},
		{"0.0.0.0", 80, "unspecified"},
		{"::", 80, "unspecified"},
		{"224.0.0.1", 80, "multicast"},
		{"ff02::1", 80, "multicast"},
		{"255.255.255.255", 80, "broadcast"},
		{"192.0.2.10", 3128, "own-listener"},
		{"127.0.0.1", 3129, "own-listener"},
		{"93.184.216.34", 443, ""},
		{"2606:4700::1111", 443, ""},
		{"192.0.2.10", 443, ""},
	} {
		if got := g.refusal(netip.MustParseAddr(tc.addr), tc.port); got != tc.want {
			t.Errorf("refusal(%s:%d) = %q, want %q", tc.addr, tc.port, got, tc.want)
		}
	}
}

func TestGuardAllowList(t *testing.T) {
	cfg := Defaults()
	cfg.AllowPrivateDestinations = []string{"10.1.0.0/16", "127.0.0.1"}
	g, err := newGuard(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	g.addListener(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3128})
	for addr, want := range map[string]string{
		"10.1.2.3":        "",
		"10.2.0.1":        "private",
		"127.0.0.1":       "",
		"127.0.0.2":       "loopback",
		"169.254.169.254": "link-local",
	} {
		if got := g.refusal(netip.MustParseAddr(addr), 80); got != want {
			t.Errorf("refusal(%s) = %q, want %q", addr, got, want)
		}
	}
	if got := g.refusal(netip.MustParseAddr("127.0.0.1"), 3128); got != "own-listener" {
		t.Errorf("own listener allowed by the allow list: %q", got)
	}
}

func TestGuardResolve(t *testing.T) {
	res := mapResolver{
		"public.example":  {netip.MustParseAddr("93.184.216.34")},
		"rebind.example":  {netip.MustParseAddr("127.0.0.1")},
		"mixed.example":   {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("93.184.216.35")},
		"metadata.attack": {netip.MustParseAddr("169.254.169.254")},
	}
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("# test\n198.51.100.7 fromfile.example alias.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Defaults()
	cfg.HostsFile = hosts
	cfg.ResolveOverrides = map[string]string{"override.example": "198.51.100.8"}
	g, err := newGuard(cfg, res)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, tc := range []struct {
		host    string
		want    string
		refused bool
	}{
		{"public.example", "93.184.216.34", false},
		{"mixed.example", "93.184.216.35", false}, // the private address is dropped
		{"rebind.example", "", true},
		{"metadata.attack", "", true},
		{"169.254.169.254", "", true},
		{"fromfile.example", "198.51.100.7", false},
		{"alias.example", "198.51.100.7", false},
		{"override.example", "198.51.100.8", false},
	} {
		addrs, err := g.resolve(ctx, tc.host, 443)
		if tc.refused {
			if !errors.Is(err, ErrDestinationRefused) {
				t.Errorf("resolve(%s) = %v, %v; want ErrDestinationRefused", tc.host, addrs, err)
			}
			continue
		}
		if err != nil || len(addrs) != 1 || addrs[0].String() != tc.want {
			t.Errorf("resolve(%s) = %v, %v; want [%s]", tc.host, addrs, err, tc.want)
		}
	}
	if _, err := g.resolve(ctx, "unknown.example", 443); !errors.Is(err, ErrResolve) {
		t.Errorf("resolve(unknown) = %v, want ErrResolve", err)
	}
	// The cache answers a second time even if DNS changed (rebinding
	// within the TTL cannot move a decided name).
	res["public.example"] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	if addrs, err := g.resolve(ctx, "public.example", 443); err != nil || addrs[0].String() != "93.184.216.34" {
		t.Errorf("cached resolve = %v, %v", addrs, err)
	}
}

func TestGuardDialsCheckedAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	cfg := Defaults()
	cfg.AllowPrivateDestinations = []string{"127.0.0.1/32"}
	// DNS says the name is somewhere unreachable; the context carries the
	// address checked for this request, and that is what is dialed.
	g, err := newGuard(cfg, mapResolver{"app.example": {netip.MustParseAddr("192.0.2.1")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.WithValue(t.Context(), destKey{}, &destination{host: "app.example", port: port, addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	c, err := g.DialContext(ctx, "tcp", net.JoinHostPort("app.example", itoa(port)))
	if err != nil {
		t.Fatalf("DialContext with a checked address: %v", err)
	}
	c.Close()
	// Without the checked address, the guard resolves and checks again.
	if _, err := g.DialContext(t.Context(), "tcp", net.JoinHostPort("localhost", itoa(port))); err == nil {
		t.Errorf("DialContext(localhost) passed the guard")
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
