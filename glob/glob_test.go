package glob_test

import (
	"testing"

	"github.com/cachewire/invalidator/glob"
)

func TestLiteralPrefix(t *testing.T) {
	for p, want := range map[string]string{
		"tenant:t1:shard:*:structured": "tenant:t1:shard:",
		`tenant:\*:vsearch:*`:          "tenant:*:vsearch:",
		"a?b":                          "a",
		"[ab]c":                        "",
		"plain":                        "plain",
		`trail\`:                       `trail\`,
	} {
		if got := glob.LiteralPrefix(p); got != want {
			t.Errorf("LiteralPrefix(%q) = %q, want %q", p, got, want)
		}
	}
}

func TestSet(t *testing.T) {
	pats := []string{"tenant:t1:shard:*:structured", "tenant:t2:shard:*:structured", `tenant:\*:vsearch:*`, "tenant:t1:vsearch:*", "x?"}
	s := glob.NewSet(pats)
	keys := []string{
		"tenant:t1:shard:9:structured", "tenant:t2:shard:1:structured", "tenant:t3:shard:1:structured",
		"tenant:*:vsearch:q", "tenant:t9:vsearch:q", "tenant:t1:vsearch:q", "xy", "xyz", "", "tenant:t1:shard:9:payload",
	}
	matched := 0
	for _, k := range keys {
		want := false
		for _, p := range pats {
			want = want || glob.Match(p, k)
		}
		if want {
			matched++
		}
		if got := s.Match(k); got != want {
			t.Errorf("Set.Match(%q) = %v, want %v (as matching each pattern says)", k, got, want)
		}
	}
	if matched != 5 {
		t.Errorf("%d keys match, want 5: the table no longer exercises both outcomes", matched)
	}
	if got := s.CommonPrefix(); got != "" {
		t.Errorf("CommonPrefix = %q, want \"\" (x? shares nothing)", got)
	}
	if got := glob.NewSet(pats[:4]).CommonPrefix(); got != "tenant:" {
		t.Errorf("CommonPrefix = %q, want tenant:", got)
	}
}
