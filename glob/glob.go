// Package glob matches keys against Redis glob patterns exactly as Redis
// does for KEYS, SCAN MATCH and PSUBSCRIBE.
package glob

import (
	"slices"
	"strings"
)

// maxGlobNesting bounds the recursion on '*', as Redis does, so that an
// abusive pattern cannot exhaust the stack.
const maxGlobNesting = 1000

// Match reports whether key matches pattern under the glob rules
// Redis applies to KEYS, SCAN MATCH and PSUBSCRIBE (stringmatchlen in
// Redis's util.c), byte for byte and case-sensitively, so that a local cache
// evicts exactly the keys the daemon deleted from Redis:
//
//   - '*' matches any run of bytes, including none;
//   - '?' matches exactly one byte;
//   - '[abc]' matches one byte of the set, '[a-z]' one in the range (bounds
//     may be reversed), '[^...]' one byte not in the set; inside brackets
//     '\' escapes the next byte; an unclosed '[' extends to the end;
//   - '\x' matches the byte x literally, so '\*' matches only '*' and '\\'
//     only '\'; a trailing lone '\' matches '\'.
//
// As in Redis, only '^' negates a set: '[!a]' matches '!' or 'a'. The
// pattern "*" alone matches every key, the empty key included, as it does
// for SCAN and KEYS.
func Match(pattern, key string) bool {
	if pattern == "*" {
		return true
	}
	skipLonger := false
	return matchGlob(pattern, key, &skipLonger, 0)
}

// matchGlob is Redis's stringmatchlen_impl. skipLonger is set once the rest
// of the pattern after a '*' failed to match at every position of the rest
// of the key: an earlier '*' cannot help either, which keeps matching
// polynomial.
func matchGlob(p, s string, skipLonger *bool, nesting int) bool {
	if nesting > maxGlobNesting {
		return false
	}
	for len(p) > 0 && len(s) > 0 {
		switch p[0] {
		case '*':
			for len(p) > 1 && p[1] == '*' {
				p = p[1:]
			}
			if len(p) == 1 {
				return true
			}
			for len(s) > 0 {
				if matchGlob(p[1:], s, skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
				s = s[1:]
			}
			*skipLonger = true
			return false
		case '?':
			p = p[1:]
		case '[':
			var ok bool
			ok, p = matchClass(p[1:], s[0])
			if !ok {
				return false
			}
		case '\\':
			if len(p) >= 2 {
				p = p[1:]
			}
			fallthrough
		default:
			if p[0] != s[0] {
				return false
			}
			p = p[1:]
		}
		s = s[1:]
		if len(s) == 0 {
			p = strings.TrimLeft(p, "*")
			break
		}
	}
	return len(p) == 0 && len(s) == 0
}

// matchClass matches c against the bracket expression that starts at p (just
// after '[') and returns the pattern after the closing ']' (or "" when the
// bracket is not closed).
func matchClass(p string, c byte) (bool, string) {
	negate := len(p) > 0 && p[0] == '^'
	if negate {
		p = p[1:]
	}
	match := false
	for {
		switch {
		case len(p) >= 2 && p[0] == '\\':
			p = p[1:]
			if p[0] == c {
				match = true
			}
		case len(p) == 0:
			return match != negate, ""
		case p[0] == ']':
			return match != negate, p[1:]
		case len(p) >= 3 && p[1] == '-':
			lo, hi := p[0], p[2]
			if lo > hi {
				lo, hi = hi, lo
			}
			if c >= lo && c <= hi {
				match = true
			}
			p = p[2:]
		default:
			if p[0] == c {
				match = true
			}
		}
		p = p[1:]
	}
}

// LiteralPrefix returns the text every key matching pattern starts with:
// the pattern up to its first unescaped '*', '?' or '[', escapes resolved.
func LiteralPrefix(pattern string) string {
	var b strings.Builder
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*', '?', '[':
			return b.String()
		case '\\':
			if i+1 < len(pattern) {
				i++
				b.WriteByte(pattern[i])
			} else {
				b.WriteByte(c)
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Set matches keys against many patterns at once: patterns are bucketed by
// their literal prefix, so a key is only matched against the patterns whose
// prefix it starts with.
type Set struct {
	byPrefix map[string][]string
	lengths  []int
}

// NewSet returns a Set of patterns.
func NewSet(patterns []string) *Set {
	s := &Set{byPrefix: map[string][]string{}}
	for _, p := range patterns {
		pre := LiteralPrefix(p)
		if _, ok := s.byPrefix[pre]; !ok && !slices.Contains(s.lengths, len(pre)) {
			s.lengths = append(s.lengths, len(pre))
		}
		s.byPrefix[pre] = append(s.byPrefix[pre], p)
	}
	return s
}

// Match reports whether key matches one of the patterns.
func (s *Set) Match(key string) bool {
	for _, l := range s.lengths {
		if l > len(key) {
			continue
		}
		for _, p := range s.byPrefix[key[:l]] {
			if Match(p, key) {
				return true
			}
		}
	}
	return false
}

// CommonPrefix returns the literal text all patterns' keys start with.
func (s *Set) CommonPrefix() string {
	first := true
	var common string
	for pre := range s.byPrefix {
		if first {
			common, first = pre, false
			continue
		}
		n := 0
		for n < len(common) && n < len(pre) && common[n] == pre[n] {
			n++
		}
		common = common[:n]
	}
	return common
}

// meta are the bytes a glob pattern gives meaning to.
const meta = `*?[]\`

// AppendEscaped appends s to dst with every glob metacharacter escaped by
// '\', so that as a pattern the result matches s literally and nothing else.
func AppendEscaped[T string | []byte](dst []byte, s T) []byte {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(meta, s[i]) >= 0 {
			dst = append(dst, '\\')
		}
		dst = append(dst, s[i])
	}
	return dst
}

// Escape returns s with every glob metacharacter escaped (see AppendEscaped).
func Escape(s string) string {
	if !strings.ContainsAny(s, meta) {
		return s
	}
	return string(AppendEscaped(make([]byte, 0, len(s)+4), s))
}
