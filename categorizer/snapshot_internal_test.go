package categorizer

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
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

// A sealed snapshot that claims two billion attribute sets is refused as
// corrupt before anything is sized by the claim (it once made the decoder
// ask for 100 GB).
func TestDecodeSnapshotRefusesHugeAttrCount(t *testing.T) {
	w := &snapWriter{}
	w.buf = append(w.buf, snapshotMagic...)
	w.u32(snapshotFormat)
	w.u64(1)
	w.u64(0)
	w.strings([]string{NewlySeenCategory})
	w.strings(nil)
	w.uvarint(0) // feeds
	w.bytes(nil) // status
	w.uvarint(1<<31 - 1)
	data := resealForFuzz(w.buf)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := DecodeSnapshot(data)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("DecodeSnapshot = %v, want ErrCorruptSnapshot", err)
	}
	if !strings.Contains(err.Error(), "attribute sets") {
		t.Errorf("error %q does not name the attribute sets", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("decoding allocated %d bytes for a %d-byte snapshot", n, len(data))
	}
}
