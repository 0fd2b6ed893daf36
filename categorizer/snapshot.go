package categorizer

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/gaissmai/bart"
)

// Snapshot binary format, all integers little endian:
//
//	magic    [8]byte  "CORDONIX"
//	format   uint32   snapshotFormat
//	version  uint64   Index.Version
//	length   uint64   payload length
//	payload  sections: names, feeds, status JSON, attribute sets,
//	         domain table (key, value) pairs, URL groups, CIDR prefixes
//	sha256   [32]byte over everything before it
//
// The domain keys are the stable hashes of hash.go, so a snapshot built
// in one process is valid in every other. Format 3 added establishedBit
// to domain table values (the feeds part of the newly-seen baseline);
// format 2 snapshots are still read, with no domain established by the
// feeds until the next build.
const (
	snapshotMagic  = "CORDONIX"
	snapshotFormat = 3
	// snapshotFormatMin is the oldest format DecodeSnapshot reads.
	snapshotFormatMin = 2
	headerLen         = 8 + 4 + 8 + 8
	// maxSnapshotLen bounds what DecodeSnapshot accepts (and allocates).
	maxSnapshotLen = 2 << 30
)

// EncodeSnapshot serializes ix into the versioned, checksummed snapshot
// format.
func EncodeSnapshot(ix *Index) ([]byte, error) {
	status, err := json.Marshal(ix.status)
	if err != nil {
		return nil, fmt.Errorf("categorizer: encode snapshot status: %w", err)
	}
	w := &snapWriter{buf: make([]byte, 0, headerLen+64+ix.domains.n*16+len(status))}
	w.buf = append(w.buf, snapshotMagic...)
	w.u32(snapshotFormat)
	w.u64(ix.version)
	w.u64(0) // payload length, patched below

	w.strings(ix.categories)
	w.strings(ix.threats)
	w.uvarint(uint64(len(ix.feeds)))
	for _, f := range ix.feeds {
		w.str(f.Name)
		w.strings(f.Categories)
		w.bool(f.Threat)
		w.uvarint(uint64(f.Entries))
	}
	w.bytes(status)

	w.uvarint(uint64(len(ix.attrs)))
	for i, a := range ix.attrs {
		w.u64(uint64(a.cats))
		w.u64(uint64(a.subCats))
		w.u64(uint64(a.thr))
		w.u64(uint64(a.subThr))
		w.bool(a.cut)
		w.u64(ix.attrFeeds[i])
	}

	w.uvarint(uint64(ix.domains.n))
	w.uvarint(uint64(ix.domainCount))
	for i := range ix.domains.slots {
		if sl := &ix.domains.slots[i]; sl.lo|sl.hi != 0 {
			w.u64(sl.key())
			w.u32(sl.val)
			w.u32(sl.kids)
		}
	}

	w.uvarint(uint64(len(ix.urlGroups)))
	for _, g := range ix.urlGroups {
		w.str(g.host)
		w.uvarint(uint64(g.end - g.start))
		for i := g.start; i < g.end; i++ {
			w.str(ix.urlPaths[i])
			w.uvarint(uint64(ix.urlAttrs[i]))
		}
	}

	w.uvarint(uint64(ix.cidrCount))
	for p, id := range ix.cidr.All() {
		b, _ := p.Addr().MarshalBinary()
		w.bytes(b)
		w.buf = append(w.buf, byte(p.Bits()))
		w.uvarint(uint64(id))
	}

	binary.LittleEndian.PutUint64(w.buf[20:28], uint64(len(w.buf)-headerLen))
	sum := sha256.Sum256(w.buf)
	return append(w.buf, sum[:]...), nil
}

// SnapshotVersion reads the version from a snapshot header without
// decoding or verifying the rest.
func SnapshotVersion(data []byte) (uint64, error) {
	if len(data) < headerLen || string(data[:8]) != snapshotMagic {
		return 0, fmt.Errorf("categorizer: snapshot: %w: bad magic", ErrCorruptSnapshot)
	}
	return binary.LittleEndian.Uint64(data[12:20]), nil
}

// DecodeSnapshot verifies and decodes a snapshot. Anything damaged,
// truncated, of another format version or failing the checksum is
// rejected with an error wrapping ErrCorruptSnapshot.
func DecodeSnapshot(data []byte) (ix *Index, err error) {
	if err := VerifySnapshot(data); err != nil {
		return nil, err
	}
	return decodeVerified(data)
}

// VerifySnapshot checks a snapshot's header, format version, length and
// checksum without decoding it, so a store can refuse to keep a damaged
// copy. The error wraps ErrCorruptSnapshot.
func VerifySnapshot(data []byte) error {
	if int64(len(data)) > maxSnapshotLen {
		return fmt.Errorf("categorizer: snapshot: %w: %d bytes is larger than %d", ErrCorruptSnapshot, len(data), int64(maxSnapshotLen))
	}
	if len(data) < headerLen+sha256.Size || string(data[:8]) != snapshotMagic {
		return fmt.Errorf("categorizer: snapshot: %w: bad magic or too short (%d bytes)", ErrCorruptSnapshot, len(data))
	}
	if f := binary.LittleEndian.Uint32(data[8:12]); f < snapshotFormatMin || f > snapshotFormat {
		return fmt.Errorf("categorizer: snapshot: %w: format %d, this build reads %d to %d", ErrCorruptSnapshot, f, snapshotFormatMin, snapshotFormat)
	}
	body := data[:len(data)-sha256.Size]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], data[len(body):]) {
		return fmt.Errorf("categorizer: snapshot: %w: sha256 mismatch", ErrCorruptSnapshot)
	}
	if n := binary.LittleEndian.Uint64(data[20:28]); n != uint64(len(body)-headerLen) {
		return fmt.Errorf("categorizer: snapshot: %w: payload length %d, have %d", ErrCorruptSnapshot, n, len(body)-headerLen)
	}
	return nil
}

func decodeVerified(data []byte) (ix *Index, err error) {
	body := data[:len(data)-sha256.Size]
	r := &snapReader{buf: body, off: headerLen}
	defer func() {
		if err != nil {
			ix = nil
		}
	}()
	ix = &Index{version: binary.LittleEndian.Uint64(data[12:20])}
	format := binary.LittleEndian.Uint32(data[8:12])
	ix.categories = r.strings("categories")
	ix.threats = r.strings("threats")
	if len(ix.categories) == 0 || ix.categories[0] != NewlySeenCategory || len(ix.categories) > MaxCategories || len(ix.threats) > MaxCategories {
		r.fail("categories", "bad category or threat table")
	}
	nf := r.count("feeds", MaxFeeds)
	for i := 0; i < nf && r.err == nil; i++ {
		ix.feeds = append(ix.feeds, FeedInfo{Name: r.str("feed name"), Categories: r.strings("feed categories"), Threat: r.bool("feed threat"), Entries: int(r.uvarint("feed entries"))})
	}
	if st := r.bytes("status"); r.err == nil && len(st) > 0 {
		if err := json.Unmarshal(st, &ix.status); err != nil {
			r.fail("status", err.Error())
		}
	}

	// An attribute set is five 8-byte words and a flag: a count larger than
	// the bytes left could hold is corrupt, and must not size an allocation.
	na := r.count("attribute sets", r.remaining()/attrRecordLen)
	ix.attrs = make([]attr, 0, na)
	ix.attrFeeds = make([]uint64, 0, na)
	for i := 0; i < na && r.err == nil; i++ {
		a := attr{cats: Set(r.u64("attr")), subCats: Set(r.u64("attr")), thr: Set(r.u64("attr")), subThr: Set(r.u64("attr")), cut: r.bool("attr")}
		ix.attrs = append(ix.attrs, a)
		ix.attrFeeds = append(ix.attrFeeds, r.u64("attr feeds"))
	}
	if r.err == nil && na == 0 {
		r.fail("attribute sets", "missing the empty set")
	}
	checkAttr := func(what string, id uint64) uint32 {
		if id >= uint64(len(ix.attrs)) {
			r.fail(what, fmt.Sprintf("attribute set %d out of range", id))
			return 0
		}
		return uint32(id)
	}

	nd := r.count("domains", r.remaining()/16)
	ix.domainCount = r.count("listed domains", nd)
	ix.domains = newTable(nd)
	for i := 0; i < nd && r.err == nil; i++ {
		k, v, kids := r.u64("domain key"), r.u32("domain value"), r.u32("domain children")
		if k == 0 {
			r.fail("domains", "zero key")
			break
		}
		if format < 3 {
			v &^= establishedBit // not a flag before format 3
		}
		checkAttr("domains", uint64(v&attrMask))
		if v&establishedBit != 0 {
			ix.established++
		}
		p, _ := ix.domains.slot(k)
		ix.domains.slots[p].val, ix.domains.slots[p].kids = v, kids
	}
	if r.err == nil && ix.domains.n != nd {
		r.fail("domains", "duplicate keys")
	}

	ng := r.count("url hosts", r.remaining())
	ix.urlHosts = newTable(ng)
	for i := 0; i < ng && r.err == nil; i++ {
		g := urlGroup{host: r.str("url host"), start: uint32(len(ix.urlPaths))}
		nr := r.count("url paths", r.remaining())
		for j := 0; j < nr && r.err == nil; j++ {
			ix.urlPaths = append(ix.urlPaths, r.str("url path"))
			ix.urlAttrs = append(ix.urlAttrs, checkAttr("url", r.uvarint("url attr")))
		}
		g.end = uint32(len(ix.urlPaths))
		ix.urlHosts.put(hashName(g.host), uint32(len(ix.urlGroups)))
		ix.urlGroups = append(ix.urlGroups, g)
	}

	nc := r.count("prefixes", r.remaining())
	ix.cidr = new(bart.Table[uint32])
	for i := 0; i < nc && r.err == nil; i++ {
		var a netip.Addr
		if err := a.UnmarshalBinary(r.bytes("prefix address")); err != nil || !a.IsValid() {
			r.fail("prefixes", "bad address")
			break
		}
		bits := int(r.byte("prefix bits"))
		p := netip.PrefixFrom(a, bits)
		if !p.IsValid() || p != p.Masked() {
			r.fail("prefixes", "bad prefix")
			break
		}
		ix.cidr.Insert(p, checkAttr("prefixes", r.uvarint("prefix attr")))
	}
	ix.cidrCount = ix.cidr.Size()
	if r.err == nil && r.off != len(body) {
		r.fail("end", fmt.Sprintf("%d trailing bytes", len(body)-r.off))
	}
	if r.err != nil {
		return nil, r.err
	}
	return ix, nil
}

type snapWriter struct{ buf []byte }

func (w *snapWriter) u32(v uint32)     { w.buf = binary.LittleEndian.AppendUint32(w.buf, v) }
func (w *snapWriter) u64(v uint64)     { w.buf = binary.LittleEndian.AppendUint64(w.buf, v) }
func (w *snapWriter) uvarint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }
func (w *snapWriter) bytes(b []byte)   { w.uvarint(uint64(len(b))); w.buf = append(w.buf, b...) }
func (w *snapWriter) str(s string)     { w.uvarint(uint64(len(s))); w.buf = append(w.buf, s...) }
func (w *snapWriter) bool(b bool) {
	if b {
		w.buf = append(w.buf, 1)
	} else {
		w.buf = append(w.buf, 0)
	}
}
func (w *snapWriter) strings(ss []string) {
	w.uvarint(uint64(len(ss)))
	for _, s := range ss {
		w.str(s)
	}
}

// snapReader reads the payload; the first error sticks and later reads
// return zero values.
type snapReader struct {
	buf []byte
	off int
	err error
}

func (r *snapReader) fail(what, why string) {
	if r.err == nil {
		r.err = fmt.Errorf("categorizer: snapshot: %w: %s at byte %d: %s", ErrCorruptSnapshot, what, r.off, why)
	}
}

func (r *snapReader) remaining() int { return len(r.buf) - r.off }

func (r *snapReader) take(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.remaining() {
		r.fail(what, "truncated")
		return nil
	}
	b := r.buf[r.off : r.off+n]
	r.off += n
	return b
}

func (r *snapReader) u32(what string) uint32 {
	if b := r.take(what, 4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *snapReader) u64(what string) uint64 {
	if b := r.take(what, 8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (r *snapReader) byte(what string) byte {
	if b := r.take(what, 1); b != nil {
		return b[0]
	}
	return 0
}

func (r *snapReader) bool(what string) bool {
	switch r.byte(what) {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail(what, "bad boolean")
	return false
}

func (r *snapReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		r.fail(what, "bad varint")
		return 0
	}
	r.off += n
	return v
}

// count reads a length and bounds it, so corrupt input cannot make the
// decoder allocate without limit.
// attrRecordLen is the encoded size of one attribute set.
const attrRecordLen = 5*8 + 1

func (r *snapReader) count(what string, max int) int {
	v := r.uvarint(what)
	if v > uint64(max) {
		r.fail(what, fmt.Sprintf("count %d exceeds %d", v, max))
		return 0
	}
	return int(v)
}

func (r *snapReader) bytes(what string) []byte {
	return r.take(what, r.count(what, r.remaining()))
}

func (r *snapReader) str(what string) string { return string(r.bytes(what)) }

func (r *snapReader) strings(what string) []string {
	n := r.count(what, r.remaining())
	ss := make([]string, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		ss = append(ss, r.str(what))
	}
	return ss
}
