// Package testutil starts the real parts integration tests use: a
// redis-server process on a free loopback port, free ports, the committed
// samples of real public feed data (testdata/, see its ATTRIBUTION.md) and
// the bundled lists, and the deterministic 2 M-name benchmark corpus. It
// owns no product behaviour.
package testutil
