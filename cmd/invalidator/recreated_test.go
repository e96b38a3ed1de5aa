package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cachewire/invalidator/cdc"
)

// recreateUsers drops the users table and creates it again, with a row
// committed in the same transaction: before the daemon can notice, so
// that row's change is never decoded.
const recreateUsers = `DROP TABLE users;
CREATE TABLE users(tenant_id text NOT NULL, id int PRIMARY KEY, name text);
INSERT INTO users VALUES ('t1', 2, 'b')`

// TestRun_RuleTableRecreated checks that a rule table dropped and created
// again while the daemon streams is added back to the publication, that
// neither the dropped rows' keys nor those of rows committed before it was
// added back stay, and that its changes are delivered again (ADR 16).
func TestRun_RuleTableRecreated(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_PUBLICATION_CHECK_INTERVAL=100ms")
	f.exec(`INSERT INTO users VALUES ('t1', 1, 'a')`)
	d := f.startReady()
	f.set("tenant:t1:user:1:profile", "tenant:t1:user:2:profile", "tenant:t1:acl:1:1")
	f.exec(recreateUsers)
	eventually(t, waitLong, "the keys of the dropped and the re-created table to go", func() bool {
		return !f.exists("tenant:t1:user:1:profile") && !f.exists("tenant:t1:user:2:profile")
	})
	if !f.exists("tenant:t1:acl:1:1") {
		t.Error("the flush deleted the keys of another table's rules")
	}
	f.expectGone(t, `INSERT INTO users VALUES ('t1', 3, 'c')`, []string{"tenant:t1:user:3:profile"}, nil)
	f.expectGone(t, `UPDATE users SET name = 'd' WHERE id = 2`, []string{"tenant:t1:user:2:profile"}, nil)
	if n := d.metric(t, "invalidator_errors_total", `kind="publication_changed"`); n < 1 {
		t.Errorf("invalidator_errors_total{kind=\"publication_changed\"} = %v, want >= 1", n)
	}
	if out := d.out.String(); !strings.Contains(out, `"msg":"a rule table`) || !strings.Contains(out, `"table":"public.users"`) {
		t.Errorf("the re-created table was not logged:\n%s", out)
	}
}

// TestRun_RuleTableRecreatedWhileStopped checks that a table re-created
// while the daemon is stopped, which the restart adds to the publication,
// leaves no stale key: what was committed to it before was never
// published (ADR 16).
func TestRun_RuleTableRecreatedWhileStopped(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_PUBLICATION_CHECK_INTERVAL=0")
	f.exec(`INSERT INTO users VALUES ('t1', 1, 'a')`)
	d := f.startReady()
	f.sync()
	if code := d.stop(t); code != 0 {
		t.Fatalf("SIGTERM: exit status %d\n%s", code, d.out.String())
	}
	f.set("tenant:t1:user:1:profile", "tenant:t1:user:2:profile")
	f.exec(recreateUsers)
	f.startReady()
	f.sync()
	for _, k := range []string{"tenant:t1:user:1:profile", "tenant:t1:user:2:profile"} {
		if f.exists(k) {
			t.Errorf("key %s is stale after the restart re-added its table", k)
		}
	}
}

// TestRun_RuleTableRecreatedUnmanaged checks that a daemon that may not
// change the publication stops with the statement that fixes it when a
// rule table leaves it.
func TestRun_RuleTableRecreatedUnmanaged(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_CREATE_SLOT=false", "INVALIDATOR_PUBLICATION_CHECK_INTERVAL=100ms")
	f.exec(fmt.Sprintf(`CREATE PUBLICATION %s FOR TABLE shards, users, acl, sessions, sentinel`, f.db))
	f.exec(fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, f.db))
	d := f.startReady()
	f.exec(recreateUsers)
	if code := d.wait(t, waitLong); code == 0 {
		t.Errorf("exit status 0, want an error")
	}
	want := fmt.Sprintf(`ALTER PUBLICATION \"%s\" ADD TABLE \"public\".\"users\"`, f.db)
	if out := d.out.String(); !strings.Contains(out, want) {
		t.Errorf("the daemon did not stop with %s:\n%s", want, out)
	}
}

// TestRun_FlushRequestSurvivesStop checks that a flush request, which the
// watch commits with the add of a table, is carried out by the stream
// even when the daemon stopped before applying it (it is in the WAL, and
// confirmed only once applied), and only by the stream of the slot it
// names (ADR 16).
func TestRun_FlushRequestSurvivesStop(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_PUBLICATION_CHECK_INTERVAL=0")
	d := f.startReady()
	f.sync()
	if code := d.stop(t); code != 0 {
		t.Fatalf("SIGTERM: exit status %d\n%s", code, d.out.String())
	}
	f.set("tenant:t1:user:1:profile", "tenant:t1:acl:1:1")
	conn, err := pgconn.Connect(context.Background(), f.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if err := cdc.RequestFlush(context.Background(), conn, f.db, []string{"public.users"}); err != nil {
		t.Fatal(err)
	}
	if err := cdc.RequestFlush(context.Background(), conn, f.db+"_other", []string{"public.acl"}); err != nil {
		t.Fatal(err)
	}
	f.startReady()
	f.sync()
	if f.exists("tenant:t1:user:1:profile") {
		t.Error("the flush requested while the daemon was stopped was not applied")
	}
	if !f.exists("tenant:t1:acl:1:1") {
		t.Error("a flush requested for another slot was applied")
	}
}
