// Package testutil starts the real parts integration tests use: a
// redis-server process on a free loopback port, free ports, and paths to
// the shared public feed data. It owns no product behaviour.
package testutil
