package dnsfilter

// rawBatch is the receive buffers of one UDP reader for the upstream
// answers it polls (rawPoller.readBatch).
type rawBatch struct {
	bufs [][]byte
	lens []int
	sys  rawBatchSys // the system call's own vectors
}

// rawBatchSize is how many upstream answers one poll reads at most.
const rawBatchSize = 16

func newRawBatch() *rawBatch {
	b := &rawBatch{bufs: make([][]byte, rawBatchSize), lens: make([]int, rawBatchSize)}
	for i := range b.bufs {
		b.bufs[i] = make([]byte, muxReadSize)
	}
	b.sys.init(b)
	return b
}

// datagram is the i-th datagram of the last read.
func (b *rawBatch) datagram(i int) []byte { return b.bufs[i][:b.lens[i]] }
