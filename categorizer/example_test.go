package categorizer_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/cordon-gw/cordon/categorizer"
)

// Build an Index from two feeds and look a host up.
func Example() {
	b := categorizer.NewBuilder()
	ads, _ := b.AddFeed("ads", []string{"ads"}, false)
	_, _ = categorizer.ParseAdblock("ads.txt", strings.NewReader("||ads.example^\n@@||ok.ads.example^\n"), b.Emit(ads))
	bad, _ := b.AddFeed("urlhaus", []string{"malware"}, true)
	_, _ = categorizer.ParseHosts("hosts", strings.NewReader("127.0.0.1\tevil.example\n"), b.Emit(bad))
	ix, _ := b.Build(1)

	for _, host := range []string{"cdn.ads.example", "ok.ads.example", "EVIL.example.", "example.org"} {
		cats, threats := ix.Names(ix.Lookup(host, "/", netip.Addr{}))
		fmt.Println(host, cats, threats)
	}
	// Output:
	// cdn.ads.example [ads] []
	// ok.ads.example [] []
	// EVIL.example. [malware] [urlhaus]
	// example.org [] []
}

// Serve the bundled default feeds, as `cordon serve` does before its
// first sync.
func ExampleBuildBundled() {
	ix, err := categorizer.BuildBundled(1)
	if err != nil {
		panic(err)
	}
	cats, threats := ix.Names(ix.Lookup("www.1008691.com", "", netip.Addr{}))
	fmt.Println(cats, threats)
	// Output: [malware] [urlhaus]
}

// Encode an Index as a snapshot and load it back, as edges do.
func ExampleDecodeSnapshot() {
	b := categorizer.NewBuilder()
	f, _ := b.AddFeed("drop", []string{"badnet"}, true)
	_, _ = categorizer.ParseIPs("drop.txt", strings.NewReader("192.0.2.0/24 ; SBL1\n"), b.Emit(f))
	ix, _ := b.Build(42)
	data, _ := categorizer.EncodeSnapshot(ix)
	got, err := categorizer.DecodeSnapshot(data)
	fmt.Println(got.Version(), err, got.Lookup("", "", netip.MustParseAddr("192.0.2.7")).Threats.Has(0))
	// Output: 42 <nil> true
}
