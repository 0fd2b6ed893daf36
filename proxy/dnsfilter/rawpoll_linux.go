package dnsfilter

import (
	"syscall"
	"unsafe"
)

// rawBatchSys holds the recvmmsg(2) vectors of a rawBatch: one call
// reads every waiting datagram, up to the batch size.
type rawBatchSys struct {
	iov  []syscall.Iovec
	hdrs []mmsghdr
}

// mmsghdr is struct mmsghdr of <sys/socket.h>: Go lays it out as C does
// (msg_len after the msghdr, padded to the msghdr's alignment).
type mmsghdr struct {
	hdr syscall.Msghdr
	len uint32
}

func (s *rawBatchSys) init(b *rawBatch) {
	s.iov = make([]syscall.Iovec, len(b.bufs))
	s.hdrs = make([]mmsghdr, len(b.bufs))
	for i := range b.bufs {
		s.iov[i].Base = &b.bufs[i][0]
		s.iov[i].SetLen(len(b.bufs[i]))
		s.hdrs[i].hdr.Iov = &s.iov[i]
		s.hdrs[i].hdr.Iovlen = 1
	}
}

func (s *rawBatchSys) recv(fd int, b *rawBatch) (int, error) {
	for {
		n, _, e := syscall.Syscall6(syscall.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&s.hdrs[0])), uintptr(len(s.hdrs)), syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		for i := range int(n) {
			b.lens[i] = int(s.hdrs[i].len)
			if s.hdrs[i].hdr.Flags&syscall.MSG_TRUNC != 0 {
				b.lens[i] = 0 // cut by the kernel: not a whole answer
			}
		}
		return int(n), nil
	}
}
