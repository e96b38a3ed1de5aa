package subscriber

import (
	"strings"

	"github.com/cachewire/invalidator/glob"
)

// MatchPattern reports whether key matches pattern under the glob rules
// Redis applies to KEYS, SCAN MATCH and PSUBSCRIBE, byte for byte, so that
// a local cache evicts exactly the keys the daemon deleted from Redis. See
// glob.Match for the rules.
func MatchPattern(pattern, key string) bool { return glob.Match(pattern, key) }

// escapeGlob escapes the glob metacharacters of s so that, as a pattern, it
// matches only s itself.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
