package categorizer

import (
	"net/netip"
	"strings"
)

// Explanation says why Lookup returned what it did. It is for people
// (the admin lookup endpoint, `cordon feeds explain`), not the hot path.
type Explanation struct {
	Host       string   `json:"host"`
	Path       string   `json:"path,omitempty"`
	IP         string   `json:"ip,omitempty"`
	Categories []string `json:"categories"`
	Threats    []string `json:"threats"`
	Matches    []Match  `json:"matches"`
	Version    uint64   `json:"version"`
	// Error is set when host is not a valid name; Lookup then still ran on
	// the raw input.
	Error string `json:"error,omitempty"`
}

// Match is one index entry that applied.
type Match struct {
	Kind       string   `json:"kind"`  // "domain", "url" or "cidr"
	Entry      string   `json:"entry"` // the listed domain, host+path prefix or CIDR
	Feeds      []string `json:"feeds"`
	Categories []string `json:"categories,omitempty"`
	Threats    []string `json:"threats,omitempty"`
	// Exception is true when the entry is an exception point: what parent
	// domains contributed is replaced by this entry's verdict (the
	// excepted feeds removed).
	Exception bool `json:"exception,omitempty"`
	// Subdomain is true when the entry is a parent domain of the host.
	Subdomain bool `json:"subdomain,omitempty"`
}

// Explain runs the lookup step by step and reports every entry that
// applied, with its feeds. It allocates; use Lookup on the hot path.
func (ix *Index) Explain(host, path string, ip netip.Addr) Explanation {
	v := ix.Lookup(host, path, ip)
	ex := Explanation{Host: host, Path: path, Version: ix.version, Categories: []string{}, Threats: []string{}, Matches: []Match{}}
	ex.Categories, ex.Threats = ix.Names(v)
	if ex.Categories == nil {
		ex.Categories = []string{}
	}
	if ex.Threats == nil {
		ex.Threats = []string{}
	}
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if norm, err := NormalizeHost(host); err == nil {
		name = norm
		ex.Host = norm
	} else if _, isIP := parseIPLiteral(name); !isIP && host != "" {
		ex.Error = err.Error()
	}
	if name != "" {
		suffixHashes(name, func(key uint64, start int, full bool) {
			val, ok := ix.domains.get(key)
			id := val & attrMask
			if !ok || id == 0 {
				return
			}
			a := ix.attrs[id]
			cats, thr := a.subCats, a.subThr
			if full {
				cats, thr = a.cats, a.thr
			}
			ex.Matches = append(ex.Matches, ix.match("domain", name[start:], id, cats, thr, a.cut, !full))
		})
		if path != "" {
			if gi, ok := ix.urlHosts.get(hashName(name)); ok {
				g := ix.urlGroups[gi]
				for i := g.start; i < g.end; i++ {
					if strings.HasPrefix(path, ix.urlPaths[i]) {
						id := ix.urlAttrs[i]
						a := ix.attrs[id]
						ex.Matches = append(ex.Matches, ix.match("url", g.host+ix.urlPaths[i], id, a.cats, a.thr, false, false))
					}
				}
			}
		}
	}
	if !ip.IsValid() {
		ip, _ = parseIPLiteral(name)
	}
	if ip.IsValid() {
		ex.IP = ip.String()
		if ix.cidrCount > 0 {
			if pfx, id, ok := ix.cidr.LookupPrefixLPM(netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())); ok {
				a := ix.attrs[id]
				ex.Matches = append(ex.Matches, ix.match("cidr", pfx.String(), id, a.cats, a.thr, false, false))
			}
		}
	}
	return ex
}

func (ix *Index) match(kind, entry string, id uint32, cats, thr Set, cut, sub bool) Match {
	m := Match{Kind: kind, Entry: entry, Exception: cut, Subdomain: sub, Feeds: []string{}}
	for f := range ix.feeds {
		if ix.attrFeeds[id]&(1<<uint(f)) != 0 {
			m.Feeds = append(m.Feeds, ix.feeds[f].Name)
		}
	}
	m.Categories, m.Threats = ix.Names(Verdict{Categories: cats, Threats: thr})
	return m
}
