package proxy

import (
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"
)

// TestNoGoroutineLeak runs plain, blocked, tunnelled, decrypted and
// upgraded traffic through a proxy, shuts everything down, and checks the
// goroutine count returns to where it was (bounded wait).
func TestNoGoroutineLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("counts goroutines after a full run")
	}
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	before := runtime.NumGoroutine()
	t.Run("traffic", func(t *testing.T) {
		h, c, _ := inspectHarness(t)
		get(t, c, h.httpURL("allowed.test", "/"))
		get(t, c, h.httpURL("casino.test", "/"))
		get(t, c, h.httpsURL("allowed.test", "/"))
		get(t, c, h.httpsURL("bank.test", "/"))
		_, port, _ := net.SplitHostPort(h.origin.Listener.Addr().String())
		resp, conn, _ := connect(t, h, "social.test:"+port)
		resp.Body.Close()
		conn.Close()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after shutdown\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
