package subscriber_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/subscriber"
)

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		pattern, key string
		want         bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*c", "abc", true},
		{"a*c", "ac", true},
		{"a*c", "abbbc", true},
		{"a*c", "abcd", false},
		{"a**c", "abc", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a?c", "abbc", false},
		{"h[ae]llo", "hello", true},
		{"h[ae]llo", "hallo", true},
		{"h[ae]llo", "hillo", false},
		{"h[^e]llo", "hallo", true},
		{"h[^e]llo", "hello", false},
		{"h[a-b]llo", "hbllo", true},
		{"h[a-b]llo", "hcllo", false},
		{"h[b-a]llo", "hallo", true}, // reversed range
		// Redis negates only with '^': '[!e]' is the set {'!', 'e'}.
		{"h[!e]llo", "hello", true},
		{"h[!e]llo", "h!llo", true},
		{"h[!e]llo", "hallo", false},
		{`h[\]]llo`, "h]llo", true},
		{`h[\-]llo`, "h-llo", true},
		{`h[\-]llo`, "hallo", false},
		{"a[", "a", false},
		{"a[b", "ab", true}, // an unclosed class runs to the end
		// Escapes: '\x' is the literal x.
		{`a\*c`, "a*c", true},
		{`a\*c`, "abc", false},
		{`a\?c`, "a?c", true},
		{`a\?c`, "abc", false},
		{`a\[b]`, "a[b]", true},
		{`a\[b]`, "ab", false},
		{`a\\c`, `a\c`, true},
		{`a\\c`, `a\\c`, false},
		{`a\`, `a\`, true}, // a trailing lone '\' is literal
		{`tenant:\*:vsearch:*`, "tenant:*:vsearch:q", true},
		{`tenant:\*:vsearch:*`, "tenant:t1:vsearch:q", false},
		{`tenant:\*:vsearch:*`, "tenant:*:vsearch:", true},
		{"tenant:t1:shard:*:structured", "tenant:t1:shard:42:structured", true},
		{"tenant:t1:shard:*:structured", "tenant:t2:shard:42:structured", false},
		{"tenant:*:shard:*:structured", "tenant:t2:shard:42:structured", true},
		{"", "", true},
		{"", "a", false},
		{"a", "", false},
	}
	for _, tt := range tests {
		if got := subscriber.MatchPattern(tt.pattern, tt.key); got != tt.want {
			t.Errorf("MatchPattern(%q, %q) = %v, want %v", tt.pattern, tt.key, got, tt.want)
		}
	}
}

// TestMatchPattern_AgainstRedis compares MatchPattern with KEYS of a real
// redis-server on random patterns over an alphabet rich in metacharacters,
// so that local eviction agrees with what the daemon deletes in Redis.
func TestMatchPattern_AgainstRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	rdb := testsrv.StartRedis(t).Client(t)
	ctx := context.Background()

	rng := rand.New(rand.NewPCG(1, 2))
	randString := func(alphabet string, maxLen int) string {
		var b strings.Builder
		for range 1 + rng.IntN(maxLen) {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	keys := map[string]bool{
		"tenant:*:vsearch:q": true, "tenant:t1:vsearch:q": true,
		`a\c`: true, "a*c": true, "abc": true, "]": true, "-": true, "^": true, "!": true,
	}
	for len(keys) < 300 {
		keys[randString(`ab*?[]^-!\:`, 5)] = true
	}
	pipe := rdb.Pipeline()
	for k := range keys {
		pipe.Set(ctx, k, "1", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("set keys: %v", err)
	}

	patterns := []string{
		`tenant:\*:vsearch:*`, `[!a]*`, `[^a]*`, `[a-]`, `[]]`, `[\]]`, `a[`, `a[b`,
		`\`, `a\`, `*\*`, `**`, `?*?`, `[^]*`, `[b-a]*`, `*[`, `[\`, `[a-\]]`,
	}
	for range 400 {
		patterns = append(patterns, randString(`ab*?[]^-!\`, 7))
	}
	matched := 0
	for _, p := range patterns {
		got, err := rdb.Keys(ctx, p).Result()
		if err != nil {
			t.Fatalf("KEYS %q: %v", p, err)
		}
		slices.Sort(got)
		if len(got) > 0 {
			matched++
		}
		var want []string
		for k := range keys {
			if subscriber.MatchPattern(p, k) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("pattern %q: redis matches %q, MatchPattern matches %q", p, got, want)
		}
	}
	// Guard against a vacuous comparison.
	if matched < len(patterns)/4 {
		t.Errorf("only %d of %d patterns matched any key; the comparison is too weak", matched, len(patterns))
	}
	t.Logf("%d of %d patterns matched at least one of %d keys", matched, len(patterns), len(keys))
}
