// Package policies owns Cordon's one shared policy: the YAML model and its
// validation, compilation to sets and bitmasks, the pure decision function
// (Compiled.Decide), the Engine both adapters call (identity, categorizer
// lookup, newly-seen, GeoIP, decision), numbered versions with an
// append-only audit log (Service), storage behind the Store interface (a
// file store here, Redis in policies/redisstore) and the admin API (API).
//
// It deliberately does not speak any wire protocol (HTTP proxying and DNS
// live in proxy and proxy/dnsfilter), does not categorize (categorizer) and
// does not aggregate access events (reports).
package policies
