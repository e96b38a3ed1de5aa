package cdc

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// TestRouteLookup_KeepsDetachedAncestors checks that a partition detached
// after its routes were looked up keeps its former ancestor in the
// answer to a later Relation message (as after a reconnect while the
// stream lags behind the DETACH): its changes made while attached must
// still reach the parent's rules. A new session's lookup shares what
// earlier ones saw.
func TestRouteLookup_KeepsDetachedAncestors(t *testing.T) {
	pg := testsrv.StartPostgres(t)
	url := pg.CreateDatabase(t, "routes")
	pg.Exec(t, "routes", `
		CREATE TABLE events(tenant_id text, id int, PRIMARY KEY (tenant_id, id)) PARTITION BY LIST (tenant_id);
		CREATE TABLE events_a PARTITION OF events FOR VALUES IN ('a');`)
	rows := pg.Query(t, "routes", `SELECT 'public.events_a'::regclass::oid`)
	oid, err := strconv.ParseUint(rows[0][0], 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seen := map[uint32][]string{}
	first := &routeLookup{url: url, seen: seen}
	defer first.close(ctx)
	rel := &Relation{ID: uint32(oid), Namespace: "public", Name: "events_a"}
	if err := first.fill(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rel.Routes, []string{"public.events"}) {
		t.Fatalf("attached: Routes %q, want [public.events]", rel.Routes)
	}
	pg.Exec(t, "routes", `ALTER TABLE events DETACH PARTITION events_a`)
	again := &routeLookup{url: url, seen: seen} // the next session's
	defer again.close(ctx)
	rel = &Relation{ID: uint32(oid), Namespace: "public", Name: "events_a"}
	if err := again.fill(ctx, rel); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rel.Routes, []string{"public.events"}) {
		t.Errorf("detached: Routes %q, want the former ancestor kept", rel.Routes)
	}
}
