// Package deptest holds the test that keeps Cordon's rooms' imports
// pointing one way (cmd → proxy, dnsfilter → policies → categorizer). It
// has no code of its own.
package deptest
