package router_test

import (
	"testing"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/router"
)

const partitionRules = `version: 1
rules:
  - name: events
    table: events
    keys: ["ev:{tenant_id}:{id}"]
  - name: events-b
    table: events_b
    keys: ["evb:{id}"]
  - name: users
    table: users
    keys: ["user:{id}"]
`

func partitionRouter(tb testing.TB) *router.Router {
	tb.Helper()
	rules, err := router.ParseRules("rules.yaml", []byte(partitionRules))
	if err != nil {
		tb.Fatal(err)
	}
	return router.New(rules, 0, nil)
}

// TestRouter_PartitionRoutes checks that a partition's change is rendered
// by its own rules and by those of the tables in its Routes, each finding
// columns by name.
func TestRouter_PartitionRoutes(t *testing.T) {
	rt := partitionRouter(t)
	// a partition attached with its columns in another order than the parent's
	leaf := newRelation(t, 20001, "public", "events_b", column{"payload", false}, column{"id", true}, column{"tenant_id", true})
	leaf.Routes = []string{"public.events"}
	res := run(t, rt, 1, insert(leaf, row(t, "x", "7", "b")))
	wantStrings(t, "Keys", res.Keys, []string{"evb:7", "ev:b:7"})

	other := newRelation(t, 20002, "public", "events_a", column{"tenant_id", true}, column{"id", true}, column{"payload", false})
	res = run(t, rt, 2, insert(other, row(t, "a", "1", "x")))
	if len(res.Keys) != 0 {
		t.Errorf("Keys = %q for a partition without Routes, want none", res.Keys)
	}
	// a new description (as after a reconnect), now with its ancestor
	other = newRelation(t, 20002, "public", "events_a", column{"tenant_id", true}, column{"id", true}, column{"payload", false})
	other.Routes = []string{"public.events"}
	res = run(t, rt, 3, &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{other}})
	wantStrings(t, "Patterns", res.Patterns, []string{"ev:*:*"})
}

// TestTxn_FlushTables checks that a flush request in a transaction adds
// the wide form of the named tables' rules, whatever their on:, and
// leaves every other rule out.
func TestTxn_FlushTables(t *testing.T) {
	rules, err := router.ParseRules("rules.yaml", []byte(partitionRules+`  - name: users-updates
    table: users
    on: [update]
    keys: ["user:{id}:name"]
`))
	if err != nil {
		t.Fatal(err)
	}
	txn := router.New(rules, 0, nil).NewTxn(1)
	txn.FlushTables([]string{"public.users", "public.nosuch"})
	txn.Commit()
	res := txn.Result()
	wantStrings(t, "Patterns", res.Patterns, []string{"user:*", "user:*:name"})
	if len(res.Keys) != 0 {
		t.Errorf("Keys = %q, want none", res.Keys)
	}
}
