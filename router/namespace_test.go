package router_test

import (
	"slices"
	"strconv"
	"testing"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/router"
)

const namespaceRules = `version: 1
key_prefix: "app:"
rules:
  - name: docs
    table: docs
    keys: ["t:{tenant_id}:doc:{id}"]
    channel: "doc:{tenant_id}:{id}"
    scope: [tenant_id]
    namespace: "t:{tenant_id}:v"
  - name: global
    table: settings
    keys: ["setting:{id}"]
    channel: "setting:{id}"
    namespace: "settings:v"
`

func docsRel(tb testing.TB) *cdc.Relation {
	tb.Helper()
	return newRelation(tb, 31, "public", "docs", column{"id", true}, column{"tenant_id", false})
}

func settingsRel(tb testing.TB) *cdc.Relation {
	tb.Helper()
	return newRelation(tb, 32, "public", "settings", column{"id", true})
}

func TestParseRules_Namespace(t *testing.T) {
	rs := mustParseRules(t, "rules.yaml", []byte(namespaceRules))
	if got := rs.Rules[0].Namespace.String(); got != "t:{tenant_id}:v" {
		t.Errorf("docs namespace = %q", got)
	}
	if got := rs.Rules[1].Namespace.String(); got != "settings:v" {
		t.Errorf("global namespace = %q", got)
	}
	plain := mustParseRules(t, "rules.yaml", []byte("version: 1\nrules:\n  - name: r\n    table: t\n    keys: [\"k:{id}\"]\n"))
	if plain.Rules[0].Namespace != nil {
		t.Errorf("a rule without namespace has %q", plain.Rules[0].Namespace)
	}
}

// Below the bound a namespaced rule deletes its exact keys as any rule
// does; past it, its wide form is one version key per tenant instead of
// patterns, listed in the tenant's wide message.
func TestTxn_Result_NamespaceKeyBound(t *testing.T) {
	const maxKeys = 10
	docs := docsRel(t)
	rt := router.New(mustParseRules(t, "rules.yaml", []byte(namespaceRules)), maxKeys, nil)

	small := run(t, rt, 1, insert(docs, row(t, "1", "t1")))
	wantStrings(t, "Keys", small.Keys, []string{"app:t:t1:doc:1"})
	if len(small.Namespaces) != 0 || len(small.Patterns) != 0 {
		t.Errorf("below the bound: Namespaces %q, Patterns %q, want none", small.Namespaces, small.Patterns)
	}

	txn := rt.NewTxn(7)
	for i := range 200 {
		txn.Add(insert(docs, row(t, strconv.Itoa(i), "t"+strconv.Itoa(i%2+1))))
	}
	txn.Commit()
	res := txn.Result()
	if len(res.Patterns) != 0 {
		t.Errorf("Patterns = %q, want none: the wide form is the namespace", res.Patterns)
	}
	wantStrings(t, "Namespaces", res.Namespaces, []string{"app:t:t2:v", "app:t:t1:v"})
	wantStrings(t, "Wide", res.Wide, []string{"docs"})
	if len(res.Keys) > maxKeys {
		t.Errorf("%d keys, want at most %d", len(res.Keys), maxKeys)
	}
	m := findMessage(t, res, "doc:t1:*")
	wantStrings(t, "namespaces of doc:t1:*", m.Namespaces, []string{"app:t:t1:v"})
}

// A TRUNCATE has no scope values: a global namespace is still one INCR,
// a namespace with placeholders cannot be rendered and the rule falls back
// to its patterns.
func TestTxn_Result_NamespaceTruncate(t *testing.T) {
	rt := router.New(mustParseRules(t, "rules.yaml", []byte(namespaceRules)), 0, nil)
	res := run(t, rt, 7, &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{docsRel(t), settingsRel(t)}})
	wantStrings(t, "Namespaces", res.Namespaces, []string{"app:settings:v"})
	wantStrings(t, "Patterns", res.Patterns, []string{"app:t:*:doc:*"})
	wantStrings(t, "namespaces of setting:*", findMessage(t, res, "setting:*").Namespaces, []string{"app:settings:v"})
	if ns := findMessage(t, res, "doc:*:*").Namespaces; len(ns) != 0 {
		t.Errorf("doc:*:* lists namespaces %q, want none", ns)
	}
}

// Past the scope bound the rule flushes every tenant: with placeholders in
// its namespace that is the all-'*' patterns, never a lost invalidation.
func TestTxn_Result_NamespaceUnscoped(t *testing.T) {
	const maxKeys = 10
	docs := docsRel(t)
	rt := router.New(mustParseRules(t, "rules.yaml", []byte(namespaceRules)), maxKeys, nil)
	txn := rt.NewTxn(7)
	for i := range 2000 {
		txn.Add(insert(docs, row(t, strconv.Itoa(i), "t"+strconv.Itoa(i))))
	}
	txn.Commit()
	res := txn.Result()
	if !slices.Contains(res.Patterns, "app:t:*:doc:*") {
		t.Errorf("Patterns %q lack the all-tenant pattern", res.Patterns)
	}
}

// replay --tenant bumps a tenant's namespace; a global namespace would
// flush every tenant, so the tenant's patterns are used instead.
func TestRouter_Wide_Namespace(t *testing.T) {
	rt := router.New(mustParseRules(t, "rules.yaml", []byte(namespaceRules)), 0, nil)
	res := rt.Wide(map[string]string{"tenant_id": "t*1"}, cdc.OpDelete)
	wantStrings(t, "Namespaces", res.Namespaces, []string{"app:t:t*1:v"})
	if len(res.Patterns) != 0 {
		t.Errorf("Patterns = %q, want none", res.Patterns)
	}
	res = rt.Wide(map[string]string{"id": "7"}, cdc.OpDelete)
	if len(res.Namespaces) != 0 {
		t.Errorf("Namespaces = %q, want none: a global namespace is wider than id 7", res.Namespaces)
	}
	wantStrings(t, "Patterns", res.Patterns, []string{"app:t:*:doc:7", "app:setting:7"})
}

// A streamed subtransaction's namespaces survive the merge; an aborted
// one's are dropped.
func TestTxn_Result_NamespaceSubtransactions(t *testing.T) {
	docs := docsRel(t)
	rt := router.New(mustParseRules(t, "rules.yaml", []byte(namespaceRules)), 0, nil)
	txn := rt.NewTxn(7)
	txn.Add(&cdc.Change{Op: cdc.OpTruncate, Xid: 8, Truncated: []*cdc.Relation{settingsRel(t)}})
	txn.Add(&cdc.Change{Op: cdc.OpInsert, Xid: 9, Rel: docs, New: row(t, "1", "t1")})
	txn.DiscardSub(9)
	txn.Commit()
	res := txn.Result()
	wantStrings(t, "Namespaces", res.Namespaces, []string{"app:settings:v"})
	wantStrings(t, "namespaces of setting:*", findMessage(t, res, "setting:*").Namespaces, []string{"app:settings:v"})
	if len(res.Keys) != 0 {
		t.Errorf("Keys = %q, want none (the subtransaction aborted)", res.Keys)
	}
}
