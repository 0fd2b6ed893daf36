//go:build !race

package dnsfilter

const raceEnabled = false
