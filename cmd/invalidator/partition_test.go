package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// partitionSchema: events is list-partitioned by tenant, events_c is
// partitioned again by range (two levels).
const partitionSchema = `
CREATE TABLE events(tenant_id text, id int, payload text, PRIMARY KEY (tenant_id, id)) PARTITION BY LIST (tenant_id);
CREATE TABLE events_a PARTITION OF events FOR VALUES IN ('a');
CREATE TABLE events_b PARTITION OF events FOR VALUES IN ('b');
CREATE TABLE events_c PARTITION OF events FOR VALUES IN ('c') PARTITION BY RANGE (id);
CREATE TABLE events_c1 PARTITION OF events_c FOR VALUES FROM (0) TO (1000);
INSERT INTO events VALUES ('a', 1, 'x'), ('b', 1, 'x'), ('c', 1, 'x');
`

// partitionRules adds a rule on the partitioned parent and one on a
// partition named directly.
const partitionRules = rulesYAML + `  - name: events
    table: events
    keys: ["ev:{tenant_id}:{id}"]
  - name: events-b
    table: events_b
    keys: ["evb:{id}"]
`

func newPartitionFixture(t *testing.T, setupSQL string, extraEnv ...string) *fixture {
	t.Helper()
	f := newDatabaseFixture(t, partitionRules)
	f.exec(partitionSchema + setupSQL)
	return f.withRedis(extraEnv...)
}

// expectGone commits sql, waits until it is applied and checks that the
// gone keys were deleted and the kept ones were not.
func (f *fixture) expectGone(t *testing.T, sql string, gone, kept []string) {
	t.Helper()
	f.set(append(append([]string{}, gone...), kept...)...)
	f.exec(sql)
	f.sync()
	for _, k := range gone {
		if f.exists(k) {
			t.Errorf("after %q, key %s is stale", sql, k)
		}
	}
	for _, k := range kept {
		if !f.exists(k) {
			t.Errorf("after %q, key %s was deleted", sql, k)
		}
	}
}

// TestRun_PartitionedRuleTable checks that a rule on a partitioned table
// fires for changes of its partitions at every level (also one attached
// while the daemon runs, with its columns in another order), that a rule
// may name a partition directly, and that a restart neither loops on the
// publication nor stops streaming (ADR 15).
func TestRun_PartitionedRuleTable(t *testing.T) {
	f := newPartitionFixture(t, "")
	d := f.startReady()

	t.Run("parent", func(t *testing.T) {
		f.expectGone(t, `UPDATE events SET payload = 'z' WHERE tenant_id = 'a' AND id = 1`, []string{"ev:a:1"}, []string{"ev:b:1", "evb:1"})
		f.expectGone(t, `INSERT INTO events VALUES ('a', 2, 'x')`, []string{"ev:a:2"}, []string{"ev:a:1"})
		f.expectGone(t, `DELETE FROM events WHERE tenant_id = 'a' AND id = 2`, []string{"ev:a:2"}, []string{"ev:a:1"})
		f.expectGone(t, `UPDATE events_a SET payload = 'y' WHERE id = 1`, []string{"ev:a:1"}, nil)
	})
	t.Run("two levels", func(t *testing.T) {
		f.expectGone(t, `UPDATE events SET payload = 'z' WHERE tenant_id = 'c' AND id = 1`, []string{"ev:c:1"}, []string{"ev:a:1"})
	})
	t.Run("partition named directly", func(t *testing.T) {
		f.expectGone(t, `UPDATE events SET payload = 'z' WHERE tenant_id = 'b' AND id = 1`, []string{"evb:1", "ev:b:1"}, []string{"ev:a:1"})
		f.expectGone(t, `DELETE FROM events_b WHERE id = 1`, []string{"evb:1", "ev:b:1"}, nil)
		f.expectGone(t, `UPDATE events SET payload = 'w' WHERE tenant_id = 'a'`, []string{"ev:a:1"}, []string{"evb:1"})
	})
	t.Run("attached later", func(t *testing.T) {
		f.exec(`CREATE TABLE events_d(payload text, id int NOT NULL, tenant_id text NOT NULL);
			ALTER TABLE events ATTACH PARTITION events_d FOR VALUES IN ('d')`)
		f.expectGone(t, `INSERT INTO events VALUES ('d', 1, 'x')`, []string{"ev:d:1"}, []string{"ev:a:1"})
		f.expectGone(t, `UPDATE events_d SET payload = 'y'`, []string{"ev:d:1"}, nil)
	})
	t.Run("truncate", func(t *testing.T) {
		f.expectGone(t, `TRUNCATE events`, []string{"ev:a:1", "ev:c:1", "ev:d:1", "ev:q:9", "evb:1"}, []string{"tenant:t1:user:1:profile"})
	})
	t.Run("restart", func(t *testing.T) {
		if code := d.stop(t); code != 0 {
			t.Fatalf("SIGTERM: exit status %d\n%s", code, d.out.String())
		}
		f.set("ev:a:5")
		f.exec(`INSERT INTO events VALUES ('a', 5, 'x')`)
		d = f.startReady()
		f.sync()
		if f.exists("ev:a:5") {
			t.Error("a change committed while stopped was not invalidated after the restart")
		}
		f.expectGone(t, `UPDATE events SET payload = 'z' WHERE tenant_id = 'a'`, []string{"ev:a:5"}, nil)
		if out := d.out.String(); strings.Contains(out, "already member") {
			t.Errorf("the restart tried to add a covered table again:\n%s", out)
		}
	})
}

// TestRun_PartitionedViaRoot checks a publication made by the user with
// publish_via_partition_root: the changes of a partition arrive as the
// parent, and still reach the rule that names the partition.
func TestRun_PartitionedViaRoot(t *testing.T) {
	f := newPartitionFixture(t, "")
	f.exec(fmt.Sprintf(`CREATE PUBLICATION %s FOR TABLE events, shards, users, acl, sessions, sentinel WITH (publish_via_partition_root = true)`, f.db))
	d := f.startReady()
	f.expectGone(t, `UPDATE events SET payload = 'z' WHERE tenant_id = 'b'`, []string{"evb:1", "ev:b:1"}, []string{"ev:a:1"})
	f.expectGone(t, `UPDATE events SET payload = 'z' WHERE tenant_id = 'a'`, []string{"ev:a:1"}, nil)
	if out := d.out.String(); strings.Contains(out, "added tables to publication") {
		t.Errorf("a publication that covers every rule table through the root was changed:\n%s", out)
	}
}

// TestSetupAndCheck_Partitioned checks that setup may run again over a
// partitioned rule table (no "already member"), and that setup and check
// say how its partitions' changes reach the rules.
func TestSetupAndCheck_Partitioned(t *testing.T) {
	f := newPartitionFixture(t, "", "INVALIDATOR_CREATE_SLOT=false")
	for i := range 2 {
		code, out, errOut := f.cli("setup")
		if code != 0 || !strings.Contains(out, "public.events is partitioned (partitions: public.events_a, public.events_b, public.events_c, public.events_c1)") ||
			!strings.Contains(out, "public.events_b is a partition of public.events: its changes arrive as public.events_b") {
			t.Fatalf("setup #%d: exit %d\n%s%s", i+1, code, out, errOut)
		}
	}
	code, out, errOut := f.cli("check", "--json")
	var c checkJSON
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("check --json: %v\n%s%s", err, out, errOut)
	}
	if !c.find("publication", "ok", "covers every rule table") || !c.find("table public.events", "ok", "go to the rules of the partition and of its ancestors") {
		t.Errorf("check does not say the publication covers the partitioned table and how: exit %d\n%s", code, out)
	}
}

// TestReplay_Partition checks that replay --table of a partition renders
// its ancestors' rules too (a partition no rule names is accepted for
// them), and that replay of the partitioned table reaches the rules of
// its partitions, as the stream does (ADR 15).
func TestReplay_Partition(t *testing.T) {
	f := newPartitionFixture(t, "")
	for _, c := range []struct {
		table      string
		gone, kept []string
	}{
		{"events_a", []string{"ev:a:1"}, []string{"ev:b:1", "evb:1"}},
		{"events_b", []string{"ev:b:1", "evb:1"}, []string{"ev:a:1"}},
		{"events_c1", []string{"ev:c:1"}, []string{"ev:a:1"}},
		{"events", []string{"ev:a:1", "ev:b:1", "ev:c:1", "evb:1"}, []string{"tenant:t1:user:1:profile"}},
	} {
		f.set(append(append([]string{}, c.gone...), c.kept...)...)
		if code, out, errOut := f.cli("replay", "--table", c.table); code != 0 {
			t.Fatalf("replay --table %s: exit %d\n%s%s", c.table, code, out, errOut)
		}
		for _, k := range c.gone {
			if f.exists(k) {
				t.Errorf("replay --table %s left key %s", c.table, k)
			}
		}
		for _, k := range c.kept {
			if !f.exists(k) {
				t.Errorf("replay --table %s deleted key %s", c.table, k)
			}
		}
	}
}
