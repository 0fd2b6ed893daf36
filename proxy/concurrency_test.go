package proxy

import (
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/cordon-gw/cordon/policies"
)

// TestConcurrentMixedTraffic runs many clients at once over every path
// (plain, blocked, warned, monitored, tunnelled, decrypted) so the race
// detector sees the shared state (warn memory, caches, metrics, events).
// Bounded by count, not time.
func TestConcurrentMixedTraffic(t *testing.T) {
	h, inspected, _ := inspectHarness(t)
	plain := h.client(nil)
	targets := []struct {
		c    *http.Client
		url  string
		want int
	}{
		{plain, h.httpURL("allowed.test", "/a"), 200},
		{plain, h.httpURL("casino.test", "/b"), 403},
		{plain, h.httpURL("social.test", "/c"), 403},
		{plain, h.httpURL("news.test", "/d"), 200},
		{inspected, h.httpsURL("allowed.test", "/e"), 200},
		{inspected, h.httpsURL("bank.test", "/f"), 200},
		{inspected, h.httpsURL("other.test", "/secret"), 403},
	}
	const workers, perWorker = 12, 14
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				tc := targets[(w+i)%len(targets)]
				resp, err := tc.c.Get(tc.url)
				if err != nil {
					errs <- err
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					errs <- &statusError{url: tc.url, got: resp.StatusCode, want: tc.want}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A spliced tunnel reports when it closes.
	plain.CloseIdleConnections()
	inspected.CloseIdleConnections()
	h.events.wait(t, func(ev *policies.AccessEvent) bool { return ev.Host == "bank.test" && ev.Method == "CONNECT" })
}

type statusError struct {
	url       string
	got, want int
}

func (e *statusError) Error() string {
	return "GET " + e.url + ": status " + http.StatusText(e.got) + ", want " + http.StatusText(e.want)
}
