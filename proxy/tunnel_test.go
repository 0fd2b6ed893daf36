package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

// rawOrigin accepts TCP connections on loopback and hands each to serve.
func rawOrigin(tb testing.TB, serve func(net.Conn)) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// TestTunnelTrickleStaysOpen: a tunnel carrying a byte now and then, in
// one direction only, outlives several idle periods.
func TestTunnelTrickleStaysOpen(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{TunnelIdleTimeout: time.Second, TLSHandshakeTimeout: 100 * time.Millisecond}})
	port := rawOrigin(t, func(c net.Conn) {
		// Server speaks: one byte every 100 ms for 3 s, then a final
		// marker; it never reads.
		for range 30 {
			if _, err := c.Write([]byte{'.'}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		_, _ = c.Write([]byte{'!'})
	})
	resp, c, br := connect(t, h, "allowed.test:"+port)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := br.ReadBytes('!')
	if err != nil {
		t.Fatalf("trickling tunnel closed after %d bytes: %v", len(got), err)
	}
	if want := append(bytes.Repeat([]byte{'.'}, 30), '!'); !bytes.Equal(got, want) {
		t.Errorf("tunnel carried %q, want %q", got, want)
	}
}

// TestTunnelPeerStopsReading: a client that keeps the tunnel open but
// stops reading while the origin sends is cut off once the socket buffers
// are full and nothing moves for the idle period.
func TestTunnelPeerStopsReading(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: Config{TunnelIdleTimeout: 300 * time.Millisecond, TLSHandshakeTimeout: 100 * time.Millisecond}})
	done := make(chan error, 1)
	port := rawOrigin(t, func(c net.Conn) {
		buf := make([]byte, 64<<10)
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		for {
			if _, err := c.Write(buf); err != nil {
				done <- err
				return
			}
		}
	})
	resp, _, _ := connect(t, h, "allowed.test:"+port)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	// The client never reads: the origin's writes block, then fail when
	// the proxy closes the tunnel.
	select {
	case err := <-done:
		if isTimeout(err) {
			t.Fatalf("the proxy kept a tunnel open whose client stopped reading: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("origin still writing into a stalled tunnel")
	}
}

// TestTunnelCarriesBothWays: a large transfer in each direction arrives
// intact through the splice relay, and half-closes are passed on.
func TestTunnelCarriesBothWays(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	const size = 4 << 20
	port := rawOrigin(t, func(c net.Conn) {
		// Echo until the client half-closes, then half-close back.
		_, _ = io.Copy(c, c)
		_ = c.(*net.TCPConn).CloseWrite()
	})
	resp, c, br := connect(t, h, "allowed.test:"+port)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	go func() {
		_, _ = c.Write(payload)
		_ = c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo through the tunnel: %d bytes back, want %d identical", len(got), size)
	}
	ev := h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Method == "CONNECT" && ev.BytesDown == size })
	if ev.BytesUp != size {
		t.Errorf("event bytes up = %d, want %d", ev.BytesUp, size)
	}
}

func TestTCPConnOfSeesThroughWrappers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1))
		}
	}()
	m := newMetrics(nil)
	ll := newLimitListener(ln, 0, m, nil)
	c, err := ll.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if tcpConnOf(c) == nil {
		t.Fatalf("tcpConnOf(%T) = nil: the listener's wrapper hides the TCP socket from splice", c)
	}
	if tcpConnOf(&deadlineConn{Conn: c}) != nil {
		t.Errorf("tcpConnOf sees through deadlineConn, whose reads must keep their deadlines")
	}
}

// TestConnectEarlyBytes: bytes a client sends in the same write as its
// CONNECT (before the 200) reach the origin, first and in order.
func TestConnectEarlyBytes(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	port := rawOrigin(t, func(c net.Conn) { _, _ = io.Copy(c, c) })
	c := dialProxy(t, h)
	early := "early-bytes-" + strings.Repeat("x", 5000)
	if _, err := io.WriteString(c, "CONNECT allowed.test:"+port+" HTTP/1.1\r\nHost: allowed.test:"+port+"\r\n\r\n"+early); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT = %v, %v", resp, err)
	}
	if _, err := io.WriteString(c, "late"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(early)+4)
	if _, err := io.ReadFull(br, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != early+"late" {
		t.Errorf("origin echoed %.40q..., want the early bytes then the late ones", got)
	}
}
