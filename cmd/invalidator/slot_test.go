package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// slotMarker is the marker key of slot in db on pg.
func slotMarker(t testing.TB, pg *testsrv.Postgres, db, slot string) string {
	t.Helper()
	sys := pg.Query(t, db, `SELECT system_identifier::text FROM pg_control_system()`)[0][0]
	return "cache:invalidate:_slot:" + sys + ":" + db + ":" + slot
}

// TestSlot_TwoServersShareRedis: two deployments with the same database,
// slot, publication and channel prefix on two PostgreSQL servers share one
// Redis. The second one starts as new (no "slot was lost", no resync
// flush), each has its own marker, and replay takes only its own server's
// journal entries.
func TestSlot_TwoServersShareRedis(t *testing.T) {
	a := newFixture(t)
	pgB, err := testsrv.NewPostgres()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pgB.Close() })
	urlB := pgB.CreateDatabase(t, a.db)
	pgB.Exec(t, a.db, schema)
	port, err := testsrv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	b := &fixture{t: t, db: a.db, pgURL: urlB, redis: a.redis, rdb: a.rdb, rules: a.rules, sub: a.sub}
	for _, e := range a.env {
		switch {
		case strings.HasPrefix(e, "INVALIDATOR_POSTGRES_URL="):
			e = "INVALIDATOR_POSTGRES_URL=" + urlB
		case strings.HasPrefix(e, "INVALIDATOR_HTTP_ADDR="):
			e = fmt.Sprintf("INVALIDATOR_HTTP_ADDR=127.0.0.1:%d", port)
		}
		b.env = append(b.env, e)
	}
	b.env = append(b.env, "INVALIDATOR_ON_SLOT_LOST=resync")

	markers := func() []string {
		keys, err := a.rdb.Keys(context.Background(), "cache:invalidate:_slot:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}
	a.startReady()
	eventually(t, waitLong, "server A's slot marker", func() bool { return len(markers()) == 1 })
	a.exec(`INSERT INTO users VALUES ('ta', 1, 'a')`)
	a.sync()

	a.set("tenant:zz:user:5:profile") // a resync of B would flush it
	dB := b.start()
	dB.waitReady(t)
	pgB.Exec(t, a.db, `INSERT INTO users VALUES ('tb', 2, 'b')`)
	a.sub.waitFor(t, waitLong, "server B's message", func(m received) bool { return m.Channel == "cache:invalidate:user:tb:2" })
	if strings.Contains(dB.out.String(), "slot was lost") || !a.exists("tenant:zz:user:5:profile") {
		t.Fatalf("server B took server A's marker for its own: resync flushed or slot lost\n%s", dB.out.String())
	}
	eventually(t, waitLong, "a marker for each server", func() bool { return len(markers()) == 2 })
	for _, m := range []string{slotMarker(t, sharedPG, a.db, a.db), slotMarker(t, pgB, a.db, a.db)} {
		if !a.exists(m) {
			t.Errorf("marker %s missing; there are %v", m, markers())
		}
	}

	for _, c := range []struct {
		f          *fixture
		own, other string
	}{{a, "tenant:ta:user:1:profile", "tenant:tb:user:2:profile"}, {b, "tenant:tb:user:2:profile", "tenant:ta:user:1:profile"}} {
		code, out, errOut := c.f.cli("replay", "--since", "1h", "--dry-run")
		if code != 0 || !strings.Contains(out, "would delete  "+c.own) || strings.Contains(out, c.other) ||
			!strings.Contains(errOut, "left out") {
			t.Errorf("replay on the server of %s: exit %d\n%s%s", c.own, code, out, errOut)
		}
	}
}

// TestSlot_LegacyMarkerCounts: the marker of an older version (slot name
// only) still tells a lost slot from a first start, and is replaced by
// this server's marker once streaming.
func TestSlot_LegacyMarkerCounts(t *testing.T) {
	f := newFixture(t)
	legacy := "cache:invalidate:_slot:" + f.db
	f.set(legacy)
	d := f.start()
	if code := d.wait(t, waitLong); code == 0 || !strings.Contains(d.out.String(), "slot was lost") {
		t.Fatalf("a slot missing under an old marker: exit %d; want it lost\n%s", code, d.out.String())
	}
	if code, out, errOut := f.cli("setup"); code != 0 {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	f.startReady()
	marker := slotMarker(t, sharedPG, f.db, f.db)
	eventually(t, waitLong, "the new marker in place of the old", func() bool { return f.exists(marker) && !f.exists(legacy) })
}
