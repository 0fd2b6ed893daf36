package policies

import (
	"net/netip"
	"time"
)

// Protocol is the transport a request came by.
type Protocol uint8

// Protocols known to rules. The zero value is ProtoHTTP.
const (
	ProtoHTTP Protocol = iota
	ProtoHTTPS
	ProtoDNS
)

var protoNames = [...]string{"http", "https", "dns"}

func (p Protocol) String() string {
	if int(p) < len(protoNames) {
		return protoNames[p]
	}
	return "unknown"
}

// ParseProtocol maps "http", "https" or "dns" to a Protocol.
func ParseProtocol(s string) (Protocol, bool) {
	for i, n := range protoNames {
		if n == s {
			return Protocol(i), true
		}
	}
	return 0, false
}

// Principal is who a request is made for: a user (possibly empty for
// location-only identification), the user's groups and the client's
// location. Principals are built by the Engine (Authenticate,
// ClientPrincipal, TokenPrincipal) and are read-only afterwards.
type Principal struct {
	User     string
	Groups   []string
	Location string

	// compiled identifiers, valid for the identity table (generation)
	// they were made with; Decide re-resolves by name when it differs.
	gen    uint64
	userID int32   // -1: not a directory user
	groups []int32 // group IDs
	locID  int32   // -1: no location
}

// Request is one transport-neutral request to decide on. Adapters fill it
// from the wire: Host is lower-case, without trailing dot or port, in
// punycode; Path is the URL path ("" for DNS and uninspected CONNECT).
type Request struct {
	Time      time.Time
	ClientIP  netip.Addr
	Principal *Principal // nil means anonymous
	Protocol  Protocol
	Host      string
	Path      string
	// DestIP is the destination address when known (proxy after
	// resolution, DNS answer inspection); the zero Addr otherwise.
	DestIP netip.Addr
}
