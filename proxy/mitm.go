package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/cordon-gw/cordon/categorizer"
	"github.com/cordon-gw/cordon/policies"
)

// leafLifetime is how long a minted leaf certificate is valid.
const leafLifetime = 7 * 24 * time.Hour

// mitm mints per-host leaf certificates from the inspection CA and says
// which tunnels are decrypted.
type mitm struct {
	ca         *CA
	leafKey    *ecdsa.PrivateKey // one key for all leaves: minting is a signature, not a keygen
	noCats     map[string]bool
	noDomains  []string
	pinning    []string
	cacheLimit int

	mu    sync.Mutex
	cache map[string]*tls.Certificate
}

func newMITM(ca *CA, cfg InspectConfig) *mitm {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(fmt.Sprintf("proxy: leaf key: %v", err))
	}
	m := &mitm{
		ca:         ca,
		leafKey:    key,
		noCats:     map[string]bool{},
		cacheLimit: cfg.LeafCacheSize,
		cache:      map[string]*tls.Certificate{},
	}
	for _, c := range cfg.DoNotInspectCategories {
		m.noCats[c] = true
	}
	for _, d := range cfg.DoNotInspectDomains {
		if h := normalizeHost(d); h != "" {
			m.noDomains = append(m.noDomains, h)
		}
	}
	for _, d := range cfg.PinningBypass {
		if h := normalizeHost(d); h != "" {
			m.pinning = append(m.pinning, h)
		}
	}
	return m
}

// shouldInspect: decrypt unless the host is on the do-not-inspect or
// pinning-bypass lists or in a do-not-inspect category.
func (m *mitm) shouldInspect(host string, _ uint16, e *policies.Engine, v categorizer.Verdict) bool {
	if hostInDomains(host, m.noDomains) || hostInDomains(host, m.pinning) {
		return false
	}
	if len(m.noCats) > 0 && !v.Categories.Empty() {
		cats, _ := e.Names(v)
		for _, c := range cats {
			if m.noCats[c] {
				return false
			}
		}
	}
	return true
}

// tlsConfig is the client-facing TLS configuration of a decrypted tunnel:
// a leaf for the client's SNI (or the CONNECT host).
func (m *mitm) tlsConfig(target string, _ *goproxy.ProxyCtx) (*tls.Config, error) {
	fallback := normalizeHost(stripPort(target))
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := normalizeHost(hi.ServerName)
			if name == "" {
				name = fallback
			}
			if name == "" {
				return nil, errors.New("proxy: no host name for the inspection certificate")
			}
			return m.leaf(name)
		},
	}, nil
}

// leaf returns a cached or freshly signed certificate for host.
func (m *mitm) leaf(host string) (*tls.Certificate, error) {
	now := time.Now()
	m.mu.Lock()
	c, ok := m.cache[host]
	m.mu.Unlock()
	if ok && now.Add(time.Hour).Before(c.Leaf.NotAfter) {
		return c, nil
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(leafLifetime)
	if notAfter.After(m.ca.cert.NotAfter) {
		notAfter = m.ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"Cordon inspection"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if a, err := netip.ParseAddr(host); err == nil {
		tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca.cert, m.leafKey.Public(), m.ca.key)
	if err != nil {
		return nil, fmt.Errorf("proxy: sign leaf for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("proxy: sign leaf for %s: %w", host, err)
	}
	c = &tls.Certificate{Certificate: [][]byte{der, m.ca.cert.Raw}, PrivateKey: m.leafKey, Leaf: leaf}
	m.mu.Lock()
	if len(m.cache) >= m.cacheLimit {
		// Drop about a tenth, arbitrary entries (map order).
		drop := max(1, m.cacheLimit/10)
		for k := range m.cache {
			delete(m.cache, k)
			if drop--; drop == 0 {
				break
			}
		}
	}
	m.cache[host] = c
	m.mu.Unlock()
	return c, nil
}
