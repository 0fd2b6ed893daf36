//go:build !unix

package dnsfilter

import "net"

// rawPoller is a no-op where descriptors cannot be duplicated: upstream
// answers are then read only by the socket's own goroutine.
type rawPoller struct{}

func newRawPoller(*net.UDPConn) rawPoller { return rawPoller{} }

func (*rawPoller) readBatch(*rawBatch) (int, error) { return 0, nil }

func (*rawPoller) close() {}

type rawBatchSys struct{}

func (rawBatchSys) init(*rawBatch) {}
