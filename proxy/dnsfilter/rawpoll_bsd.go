//go:build unix && !linux

package dnsfilter

import "syscall"

// rawBatchSys reads one datagram per system call where recvmmsg(2) does
// not exist.
type rawBatchSys struct{}

func (rawBatchSys) init(*rawBatch) {}

func (rawBatchSys) recv(fd int, b *rawBatch) (int, error) {
	for i := range b.bufs {
		n, err := syscall.Read(fd, b.bufs[i])
		if err == syscall.EINTR {
			n, err = syscall.Read(fd, b.bufs[i])
		}
		if err != nil {
			if i > 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK) {
				return i, nil
			}
			return i, err
		}
		b.lens[i] = n
	}
	return len(b.bufs), nil
}
