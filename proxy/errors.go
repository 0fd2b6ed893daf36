package proxy

import "errors"

// Sentinel errors, matched with errors.Is.
var (
	// ErrDestinationRefused: the destination resolves only to addresses
	// the proxy must not reach (loopback, link-local, private, its own
	// listeners...).
	ErrDestinationRefused = errors.New("destination refused")
	// ErrResolve: the destination host name could not be resolved.
	ErrResolve = errors.New("cannot resolve destination")
	// ErrBadTarget: a CONNECT target or URL authority is not a sane
	// host:port.
	ErrBadTarget = errors.New("bad target")
	// ErrNoEngine: Deps.Engine is required.
	ErrNoEngine = errors.New("no policy engine")
	// ErrCAExists: InitCA found a CA already in the directory.
	ErrCAExists = errors.New("CA already exists")
	// ErrNoClientHello: the first bytes of a tunnel are not a TLS
	// ClientHello.
	ErrNoClientHello = errors.New("not a TLS ClientHello")
)
