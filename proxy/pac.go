package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
)

// pacHandler serves /proxy.pac and /wpad.dat.
type pacHandler struct {
	cfg       PACConfig
	proxyPort atomic.Value // string: the port of the proxy listener
	// policyBypass returns the policy's bypass-list hosts ("example.com",
	// "*.example.com"); they go DIRECT in every variant.
	policyBypass func() []string
	// locate returns the policy location of a client address ("" when
	// none); it picks the variant when the URL names no location.
	locate func(ip netip.Addr) string
}

func newPACHandler(cfg Config, policyBypass func() []string, locate func(netip.Addr) string) *pacHandler {
	_, port, _ := net.SplitHostPort(cfg.Listen)
	h := &pacHandler{cfg: cfg.PAC, policyBypass: policyBypass, locate: locate}
	h.proxyPort.Store(port)
	return h
}

// setListener records the port the proxy actually listens on (the
// configured one may be 0).
func (h *pacHandler) setListener(addr net.Addr) {
	if _, port, err := net.SplitHostPort(addr.String()); err == nil {
		h.proxyPort.Store(port)
	}
}

// PACHandler serves the proxy auto-config file (mount it at /proxy.pac and
// /wpad.dat). ?location=<name> selects a location's variant; without it
// the location of the client's address in the policy does; an unknown
// location gets the default variant.
func (s *Server) PACHandler() http.Handler { return s.pac }

// pacVariant is the resolved PAC settings for one location.
type pacVariant struct {
	location        string
	edges           []string
	direct          bool
	internalDomains []string
	bypass          []string
	plainDirect     bool
	privateDirect   bool
}

func (h *pacHandler) variant(location string) pacVariant {
	c := h.cfg
	v := pacVariant{
		edges:           c.Edges,
		direct:          c.Direct,
		internalDomains: c.InternalDomains,
		bypass:          c.Bypass,
		plainDirect:     !c.KeepPlainHostNames,
		privateDirect:   !c.KeepPrivateNetworks,
	}
	if l, ok := c.Locations[location]; ok {
		v.location = location
		if len(l.Edges) > 0 {
			v.edges = l.Edges
		}
		if l.Direct != nil {
			v.direct = *l.Direct
		}
		if l.InternalDomains != nil {
			v.internalDomains = l.InternalDomains
		}
		if l.Bypass != nil {
			v.bypass = l.Bypass
		}
	}
	if h.policyBypass != nil {
		for _, b := range h.policyBypass() {
			if strings.HasPrefix(b, "*.") {
				v.bypass = append(v.bypass[:len(v.bypass):len(v.bypass)], b)
			} else {
				v.internalDomains = append(v.internalDomains[:len(v.internalDomains):len(v.internalDomains)], b)
			}
		}
	}
	return v
}

func (h *pacHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	loc := r.URL.Query().Get("location")
	if loc == "" && h.locate != nil {
		loc = h.locate(remoteAddr(r))
	}
	v := h.variant(loc)
	if len(v.edges) == 0 {
		// Default: the host this file was fetched from, on the proxy port.
		host := stripPort(r.Host)
		if host == "" {
			host = "127.0.0.1"
		}
		v.edges = []string{net.JoinHostPort(host, h.proxyPort.Load().(string))}
	}
	w.Header().Set("Content-Type", "application/x-ns-proxy-autoconfig")
	w.Header().Set("Cache-Control", "max-age=300")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write([]byte(buildPAC(v)))
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func jsArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = jsString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// buildPAC writes FindProxyForURL for a variant. Private-network bypass
// only looks at IP literals: resolving names in the PAC would cost a DNS
// lookup per request in the browser and leak names.
func buildPAC(v pacVariant) string {
	proxies := make([]string, 0, len(v.edges)+1)
	for _, e := range v.edges {
		proxies = append(proxies, "PROXY "+e)
	}
	if v.direct {
		proxies = append(proxies, "DIRECT")
	}
	domains := make([]string, 0, len(v.internalDomains))
	for _, d := range v.internalDomains {
		domains = append(domains, strings.ToLower(strings.Trim(d, ".")))
	}
	var b strings.Builder
	b.WriteString("// Cordon proxy auto-config (generated)")
	if v.location != "" {
		// Only safe characters: a JS line terminator in a name would end
		// the comment.
		b.WriteString(" for location " + strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
				return r
			}
			return '_'
		}, v.location))
	}
	b.WriteString(".\nfunction FindProxyForURL(url, host) {\n")
	b.WriteString("  var proxies = " + jsString(strings.Join(proxies, "; ")) + ";\n")
	b.WriteString("  host = host.toLowerCase();\n")
	b.WriteString("  if (host.charAt(host.length - 1) == \".\") host = host.substring(0, host.length - 1);\n")
	if v.plainDirect {
		b.WriteString("  if (isPlainHostName(host)) return \"DIRECT\";\n")
	}
	if len(domains) > 0 {
		b.WriteString("  var internal = " + jsArray(domains) + ";\n")
		b.WriteString("  for (var i = 0; i < internal.length; i++) {\n")
		b.WriteString("    if (host == internal[i] || dnsDomainIs(host, \".\" + internal[i])) return \"DIRECT\";\n")
		b.WriteString("  }\n")
	}
	if len(v.bypass) > 0 {
		b.WriteString("  var bypass = " + jsArray(v.bypass) + ";\n")
		b.WriteString("  for (var j = 0; j < bypass.length; j++) {\n")
		b.WriteString("    if (shExpMatch(host, bypass[j])) return \"DIRECT\";\n")
		b.WriteString("  }\n")
	}
	if v.privateDirect {
		b.WriteString(`  if (/^[0-9]{1,3}(\.[0-9]{1,3}){3}$/.test(host)) {
    if (isInNet(host, "10.0.0.0", "255.0.0.0") ||
        isInNet(host, "172.16.0.0", "255.240.0.0") ||
        isInNet(host, "192.168.0.0", "255.255.0.0") ||
        isInNet(host, "127.0.0.0", "255.0.0.0") ||
        isInNet(host, "169.254.0.0", "255.255.0.0") ||
        isInNet(host, "100.64.0.0", "255.192.0.0")) return "DIRECT";
  }
  if (host.indexOf(":") >= 0) {
    var h6 = host.replace(/^\[/, "").replace(/\]$/, "");
    if (h6 == "::1" || /^f[cd][0-9a-f]{0,2}:/.test(h6) || /^fe[89ab][0-9a-f]?:/.test(h6)) return "DIRECT";
  }
`)
	}
	b.WriteString("  return proxies;\n}\n")
	return b.String()
}
