package categorizer

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkNewlySeenCheck is the hot-path cost of the newly-seen check of
// a host whose registrable domain this edge holds (4096 hosts cycled),
// with the baseline of the bundled feeds and the popularity list:
//   - old: first seen before the window (most traffic once learned):
//     answered from the entry alone;
//   - recent: first seen within the window, in no baseline: the baseline
//     is probed (popularity list, the index of the bundled feeds, the
//     configured list) and the domain is newly seen;
//   - established: a popular domain first seen within the window: the
//     baseline answers.
func BenchmarkNewlySeenCheck(b *testing.B) {
	ix, err := BuildBundled(1)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	popular := []string{"www.bet365.com", "mail.google.com", "www.facebook.com", "en.wikipedia.org", "www.amazon.com", "login.live.com", "www.bbc.co.uk", "sts.amazonaws.com"}
	for _, c := range []struct {
		name  string
		host  func(i int) string
		first time.Time
	}{
		{"old", func(i int) string { return fmt.Sprintf("www.old%d.example", i) }, now.Add(-48 * time.Hour)},
		{"recent", func(i int) string { return fmt.Sprintf("cdn.recent%d.example.net", i) }, now.Add(-time.Hour)},
		{"established", func(i int) string { return popular[i%len(popular)] }, now.Add(-time.Hour)},
	} {
		b.Run(c.name, func(b *testing.B) {
			n := benchNewlySeen(ix)
			hosts := make([]string, 4096)
			for i := range hosts {
				hosts[i] = c.host(i)
				n.Check(hosts[i], c.first)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				n.Check(hosts[i&4095], now)
				i++
			}
		})
	}
}
