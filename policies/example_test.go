package policies_test

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/policies"
)

// The Engine is what the proxy and the DNS filter call: identity, then
// Check on every request.
func ExampleEngine() {
	b := categorizer.NewBuilder()
	feed, _ := b.AddFeed("ut1-gambling", []string{"gambling"}, false)
	_ = b.Add(feed, categorizer.Entry{Kind: categorizer.KindDomain, Host: "casino.example"})
	ix, _ := b.Build(1)

	doc, err := policies.Parse([]byte(`
groups: [{name: students}]
locations: [{name: campus, cidrs: [10.20.0.0/16]}]
rules:
  - id: campus-gambling
    locations: [campus]
    categories: [gambling]
    action: block
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	e := policies.NewEngine(policies.EngineConfig{Logger: slog.New(slog.DiscardHandler)})
	_ = e.SetIndex(ix)
	if err := e.SetPolicy(doc, 1); err != nil {
		fmt.Println(err)
		return
	}
	client := netip.MustParseAddr("10.20.3.4")
	who, ok := e.ClientPrincipal(client)
	fmt.Println("client known:", ok, "location:", who.Location)

	r := policies.Request{ClientIP: client, Principal: who, Protocol: policies.ProtoDNS, Host: "www.casino.example"}
	d, v := e.Check(&r)
	cats, _ := e.Names(v)
	fmt.Println(d.Action, d.RuleID, d.Reason, d.Match, cats, "version", d.Version)
	// Output:
	// client known: true location: campus
	// block campus-gambling category gambling [gambling] version 1
}

// Validation names the line, the field and the reason of every problem.
func ExampleValidate() {
	doc, _ := policies.Parse([]byte(`rules:
  - id: a
    groups: [staff]
    action: block
  - id: a
    action: maybe
`))
	err := policies.Validate(doc, nil)
	for _, p := range err.(*policies.ValidationError).Problems {
		fmt.Println(p)
	}
	// Output:
	// line 3: rules[0].groups[0]: unknown group "staff"
	// line 5: rules[1].id: duplicate id "a" (also rules[0], line 2)
	// line 6: rules[1].action: unknown action "maybe": want allow, block or warn
}
