package categorizer

// benchNewlySeen is the tracker BenchmarkNewlySeenCheck measures: memory
// only, no learning period, the baseline of ix's feeds.
func benchNewlySeen(ix *Index) *NewlySeen {
	n := NewNewlySeen(NewlySeenConfig{Learning: -1}, nil, nil, nil)
	n.SetIndex(ix)
	return n
}
