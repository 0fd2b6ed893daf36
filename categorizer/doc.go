// Package categorizer owns everything Cordon knows about a destination
// before policy is applied: the feed formats and their parsers (hosts,
// plain domains, AdBlock/AdGuard DNS rules, UT1 category directories,
// URL lists, IP/CIDR lists), the compact immutable Index that answers
// Lookup(host, path, ip) without allocating, GeoIP countries (Geo), the
// newly-seen-domain tracker (NewlySeen) with its baseline of established
// domains (DomainSet, PopularDomains) and its learning period, the
// versioned Snapshot encoding with its SnapshotStore interface (a file
// store lives here, the Redis store in categorizer/redisstore), the one
// host normalization every adapter shares (CanonicalHost), the Syncer
// that downloads, validates,
// compiles and publishes feeds, and the bundled default feeds embedded in
// the binary.
//
// It deliberately knows nothing about users, rules or actions: a Verdict
// is the input of policies.Decide, never a decision.
//
// Domain entries are stored as 64-bit stable hashes (FNV-1a over the name
// read right to left, then a 64-bit finalizer), so a compiled Index can be
// shipped between processes as a snapshot. Two different names share a
// hash with probability about 2^-64 per pair; a lookup of an unlisted name
// is miscategorized with probability about (labels × entries) / 2^64.
package categorizer
