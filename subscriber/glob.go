package subscriber

import "github.com/cachewire/invalidator/glob"

// MatchPattern reports whether key matches pattern under the glob rules
// Redis applies to KEYS, SCAN MATCH and PSUBSCRIBE, byte for byte, so that
// a local cache evicts exactly the keys the daemon deleted from Redis. See
// glob.Match for the rules.
func MatchPattern(pattern, key string) bool { return glob.Match(pattern, key) }
