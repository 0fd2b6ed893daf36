// Package redisstore keeps categorizer state in Redis so every edge shares
// it: compiled feed snapshots (chunked, versioned, checksummed, announced
// on pub/sub) and the newly-seen-domain first sightings. It works with any
// go-redis UniversalClient (single node, Sentinel, Cluster: all keys of one
// store share a hash tag). It holds no policy and never sits on the
// lookup path: edges read snapshots from here and serve from memory.
package redisstore
