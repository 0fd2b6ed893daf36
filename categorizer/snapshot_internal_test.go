package categorizer

import (
	"crypto/sha256"
	"encoding/binary"
)

// resealForFuzz fixes the magic, format, length and checksum of data so
// the fuzzer exercises the section decoders.
func resealForFuzz(data []byte) []byte {
	c := append([]byte(nil), data...)
	copy(c, snapshotMagic)
	binary.LittleEndian.PutUint32(c[8:12], snapshotFormat)
	binary.LittleEndian.PutUint64(c[20:28], uint64(len(c)-headerLen))
	sum := sha256.Sum256(c)
	return append(c, sum[:]...)
}
