package router_test

import (
	"slices"
	"strconv"
	"testing"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/router"
)

// pastBoundTxn feeds rows shard rows (tenants t1 and t2) to a transaction
// that arrives committed (Early is called before the first change, as the
// decoder does), with a key bound of maxKeys. It returns the transaction,
// committed, and every key its early parts handed on, in order.
func pastBoundTxn(t *testing.T, maxKeys, rows int, more ...*cdc.Change) (*router.Txn, []string) {
	t.Helper()
	shards := shardsRel(t)
	txn := renderRouter(t, maxKeys, nil).NewTxn(7)
	if _, ok := txn.Early(); ok {
		t.Fatal("Early split a transaction with no changes")
	}
	var early []string
	add := func(c *cdc.Change) {
		txn.Add(c)
		if part, ok := txn.Early(); ok {
			res := part.Result()
			if res.NumMessages() != 0 || len(res.Patterns) != 0 || len(res.Covered) != 0 {
				t.Fatalf("early part: %d messages, patterns %q, covered %q: want keys only", res.NumMessages(), res.Patterns, res.Covered)
			}
			early = append(early, res.Keys...)
		}
	}
	for i := range rows {
		add(insert(shards, row(t, strconv.Itoa(i), "t"+strconv.Itoa(1+i%2), "title", "p")))
		if i == rows/2 {
			add(insert(shards, row(t, "3", "t2", "title", "p"))) // a key listed already
			j := rows/2 - 1                                      // a key past the bound, not handed on yet
			add(insert(shards, row(t, strconv.Itoa(j), "t"+strconv.Itoa(1+j%2), "title", "p")))
		}
	}
	for _, c := range more {
		add(c)
	}
	txn.Commit()
	return txn, early
}

func shardKey(i int) string {
	return "app:tenant:t" + strconv.Itoa(1+i%2) + ":shard:" + strconv.Itoa(i) + ":structured"
}

// TestTxn_PastBound: a committed transaction past the key bound deletes
// every row's exact key, each once, in early parts and at commit, and
// scans nothing for them; its messages past the bound take the wide form,
// whose key patterns are covered, and what it holds stays bounded.
func TestTxn_PastBound(t *testing.T) {
	const maxKeys, rows = 100, 2*router.EarlyKeys + 5000
	txn, early := pastBoundTxn(t, maxKeys, rows)
	res := txn.Result()
	deleted := append(slices.Clone(early), res.ToUnlink()...)
	if len(deleted) != rows {
		t.Errorf("%d keys deleted, want one per row (%d)", len(deleted), rows)
	}
	seen := map[string]bool{}
	for _, k := range deleted {
		if seen[k] {
			t.Fatalf("key %q deleted twice", k)
		}
		seen[k] = true
	}
	for i := range rows {
		if !seen[shardKey(i)] {
			t.Fatalf("key %q never deleted", shardKey(i))
		}
	}
	if len(early) < 2*router.EarlyKeys-maxKeys {
		t.Errorf("%d keys went early, want about %d", len(early), 2*router.EarlyKeys)
	}
	// The rule's own patterns are scanned; its keys' wide form is not.
	wantStrings(t, "Patterns", res.Patterns, []string{"app:tenant:t1:vsearch:*", "app:tenant:t2:vsearch:*"})
	wantStrings(t, "Covered", slices.Sorted(slices.Values(res.Covered)), []string{"app:tenant:t1:shard:*:structured", "app:tenant:t2:shard:*:structured"})
	wantStrings(t, "PastBound", res.PastBound, []string{"shard-structured"})
	wantStrings(t, "Wide", res.Wide, nil)
	m := findMessage(t, res, "shard:t1:*")
	if !slices.Contains(m.Patterns, "app:tenant:t1:shard:*:structured") || len(m.Keys) != 0 {
		t.Errorf("wide message of t1: keys %q, patterns %q; want the covered pattern", m.Keys, m.Patterns)
	}
	if n := len(res.Keys) + res.NumMessages(); n > maxKeys+router.EarlyKeys {
		t.Errorf("the result holds %d keys and messages for %d rows; want at most the bound and one part (%d)", n, rows, maxKeys+router.EarlyKeys)
	}
}

// TestTxn_PastBound_Truncate: a TRUNCATE in a committed transaction past
// the bound still needs the scanned wide form, for every value.
func TestTxn_PastBound_Truncate(t *testing.T) {
	trunc := &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{shardsRel(t)}}
	txn, _ := pastBoundTxn(t, 100, 500, trunc)
	res := txn.Result()
	if !slices.Contains(res.Patterns, "app:tenant:*:shard:*:structured") {
		t.Errorf("Patterns %q lack the all-'*' wide form", res.Patterns)
	}
	wantStrings(t, "Wide", res.Wide, []string{"shard-structured"})
	for i := range 500 {
		if !covered(res, shardKey(i)) && !slices.Contains(res.ToUnlink(), shardKey(i)) {
			t.Fatalf("key %q not covered", shardKey(i))
		}
	}
}

// TestTxn_PastBound_NotCommitted: a transaction nobody vouched for (a
// streamed one) switches to the scanned wide form past the bound, as ever.
func TestTxn_PastBound_NotCommitted(t *testing.T) {
	shards := shardsRel(t)
	txn := renderRouter(t, 100, nil).NewTxn(7)
	for i := range 500 {
		txn.Add(insert(shards, row(t, strconv.Itoa(i), "t"+strconv.Itoa(1+i%2), "title", "p")))
	}
	txn.Commit()
	res := txn.Result()
	if !slices.Contains(res.Patterns, "app:tenant:t1:shard:*:structured") || len(res.Covered) != 0 || len(res.PastBound) != 0 {
		t.Errorf("Patterns %q, Covered %q, PastBound %q: want the scanned wide form", res.Patterns, res.Covered, res.PastBound)
	}
	wantStrings(t, "Wide", res.Wide, []string{"shard-structured"})
}

// TestTxn_PastBound_Unknown: past the bound, a key with an unknown value
// (an unchanged TOASTed value) cannot be enumerated: the rule takes its
// scanned wide form, and the transaction stays bounded however many such
// rows follow (before, each added a pattern of its own).
func TestTxn_PastBound_Unknown(t *testing.T) {
	shards := shardsRel(t)
	var more []*cdc.Change
	for i := range 1000 {
		more = append(more, updateChange(shards, cdc.OldNone, nil, row(t, strconv.Itoa(i), toast{}, "title", "p")))
	}
	txn, _ := pastBoundTxn(t, 100, 500, more...)
	res := txn.Result()
	if !slices.Contains(res.Patterns, "app:tenant:*:shard:*:structured") {
		t.Errorf("Patterns %q lack the all-'*' wide form", res.Patterns)
	}
	// shard-payload (on update) meets the bound with an unknown value too
	wantStrings(t, "Wide", res.Wide, []string{"shard-structured", "shard-payload"})
	if n := len(res.Patterns) + res.NumMessages(); n > 200 {
		t.Errorf("%d patterns and messages for 1000 rows with an unknown value; want a bounded number", n)
	}
}
