package categorizer

import (
	"syscall"
	"unsafe"
)

// adviseHugePages asks Linux to back a large, not yet touched table with
// transparent huge pages (2 MiB): a random probe into a table of tens of
// MiB then costs one TLB entry per 2 MiB instead of a page walk per 4 KiB.
// It is advice: on failure (or THP disabled) nothing changes.
func adviseHugePages(s []slot) {
	const huge = 2 << 20
	size := uintptr(len(s)) * unsafe.Sizeof(slot{})
	if size < 4*huge {
		return
	}
	base := unsafe.Pointer(unsafe.SliceData(s))
	start := uintptr(base)
	end := (start + size) &^ (huge - 1)
	skip := ((start + huge - 1) &^ (huge - 1)) - start
	if end <= start+skip {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Add(base, skip)), end-start-skip)
	_ = syscall.Madvise(b, 14) // MADV_HUGEPAGE
}
