package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"

	"github.com/cordon-gw/cordon/policies"
)

//go:embed starter-policy.yaml
var starterPolicy []byte

// seedPolicy makes sure a policy exists: the configured policy file (policy
// as code: applied as a new version whenever it differs from the current
// one), else the starter policy on first start.
func (g *gateway) seedPolicy(ctx context.Context) error {
	cur := g.service.Current()
	if cur != nil && cur.Number == 0 {
		cur = nil // the empty policy of a store that has no version yet
	}
	src, data, source := "starter policy", starterPolicy, policies.SourceSystem
	if f := g.cfg.Policy.File; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("policy.file: %w", err)
		}
		src, data, source = f, b, policies.SourceFile
	} else if cur != nil {
		return nil
	}
	doc, err := policies.Parse(data)
	if err != nil {
		return fmt.Errorf("policy %s: %w", src, err)
	}
	if source == policies.SourceSystem {
		fitStarter(doc, g.engine.Table())
	}
	if cur != nil && samePolicy(cur.Policy, doc) {
		return nil
	}
	actor := policies.Actor{Name: "cordon", Role: policies.RoleAdmin, Source: source}
	v, err := g.service.Put(ctx, actor, doc, "applied from "+src)
	if err != nil {
		return fmt.Errorf("policy %s: %w", src, err)
	}
	g.log.Info("policy applied", "from", src, "version", v.Number)
	return nil
}

// samePolicy compares two documents by their canonical JSON form (what the
// store keeps), so a policy file re-read at every start adds no version.
func samePolicy(a, b *policies.Policy) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// fitStarter keeps, in each rule of the starter policy, only the categories
// the loaded feeds provide, and drops a category rule left with none: with
// custom feeds the starter policy still validates and still blocks threats.
func fitStarter(doc *policies.Policy, table policies.CategoryTable) {
	if table == nil {
		return
	}
	rules := doc.Rules[:0]
	for _, r := range doc.Rules {
		if len(r.Categories) > 0 {
			known := r.Categories[:0]
			for _, c := range r.Categories {
				if _, ok := table.CategoryID(c); ok {
					known = append(known, c)
				}
			}
			if len(known) == 0 {
				continue
			}
			r.Categories = known
		}
		rules = append(rules, r)
	}
	doc.Rules = rules
}
