package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachewire/invalidator/router"
)

const waitLong = 60 * time.Second

// TestRun_RowChanges checks that insert, update, delete and truncate delete
// exactly the keys their rows feed and publish the documented message.
func TestRun_RowChanges(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO shards VALUES ('t1', 1, 'p', 'a'), ('t1', 2, 'p', 'b'), ('t2', 1, 'p', 'c')`)
	d := f.startReady()

	t.Run("insert", func(t *testing.T) {
		f.set("tenant:t1:user:7:profile", "tenant:t1:user:8:profile")
		f.exec(`INSERT INTO users VALUES ('t1', 7, 'ann')`)
		f.sync()
		if f.exists("tenant:t1:user:7:profile") {
			t.Error("inserted user's key was not deleted")
		}
		if !f.exists("tenant:t1:user:8:profile") {
			t.Error("another user's key was deleted")
		}
		checkMessage(t, oneMessage(t, f.sub, "user:t1:7"), "insert", "public.users", "user-profile", []string{"tenant:t1:user:7:profile"})
	})

	t.Run("update", func(t *testing.T) {
		f.set("tenant:t1:shard:1:structured", "tenant:t1:shard:2:structured", "tenant:t2:shard:1:structured",
			"tenant:t1:vsearch:q1", "tenant:t2:vsearch:q1")
		f.exec(`UPDATE shards SET payload = 'new' WHERE tenant_id = 't1' AND id = 1`)
		f.sync()
		for k, want := range map[string]bool{
			"tenant:t1:shard:1:structured": false, "tenant:t1:vsearch:q1": false,
			"tenant:t1:shard:2:structured": true, "tenant:t2:shard:1:structured": true, "tenant:t2:vsearch:q1": true,
		} {
			if got := f.exists(k); got != want {
				t.Errorf("key %s exists = %v, want %v", k, got, want)
			}
		}
		checkMessage(t, oneMessage(t, f.sub, "shard:t1:1"), "update", "public.shards", "shard-structured", []string{"tenant:t1:shard:1:structured"})
	})

	t.Run("changed filter", func(t *testing.T) {
		f.set("tenant:t1:shard:2:structured")
		before := len(f.sub.on("cache:invalidate:shard:t1:2"))
		// neither payload nor title changes: the rule must not fire
		f.exec(`UPDATE shards SET payload = payload WHERE tenant_id = 't1' AND id = 2`)
		f.sync()
		if !f.exists("tenant:t1:shard:2:structured") {
			t.Error("an update that changed no `changed` column invalidated the key")
		}
		if n := len(f.sub.on("cache:invalidate:shard:t1:2")); n != before {
			t.Errorf("an update that changed no `changed` column published %d messages", n-before)
		}
	})

	t.Run("delete", func(t *testing.T) {
		f.set("tenant:t2:shard:1:structured", "session:abc", "session:def")
		f.exec(`INSERT INTO sessions VALUES ('abc', 1), ('def', 2)`)
		f.exec(`DELETE FROM shards WHERE tenant_id = 't2'; DELETE FROM sessions WHERE token_hash = 'abc'`)
		f.sync()
		if f.exists("tenant:t2:shard:1:structured") || f.exists("session:abc") {
			t.Error("deleted rows' keys were not deleted")
		}
		if !f.exists("session:def") {
			t.Error("session rule fires on insert although its `on` excludes it")
		}
		checkMessage(t, oneMessage(t, f.sub, "shard:t2:1"), "delete", "public.shards", "shard-structured", []string{"tenant:t2:shard:1:structured"})
	})

	t.Run("truncate", func(t *testing.T) {
		f.set("tenant:t1:shard:1:structured", "tenant:t9:shard:5:structured", "tenant:t1:vsearch:x", "tenant:t1:user:9:profile")
		f.exec(`TRUNCATE shards`)
		f.sync()
		for k, want := range map[string]bool{
			"tenant:t1:shard:1:structured": false, "tenant:t9:shard:5:structured": false, "tenant:t1:vsearch:x": false,
			"tenant:t1:user:9:profile": true,
		} {
			if got := f.exists(k); got != want {
				t.Errorf("key %s exists = %v, want %v", k, got, want)
			}
		}
		msgs := f.sub.on("cache:invalidate:shard:*:*")
		if len(msgs) != 1 || msgs[0].Msg["op"] != "truncate" {
			t.Fatalf("want one truncate message on shard:*:*, got %+v", msgs)
		}
	})

	if code := d.stop(t); code != 0 {
		t.Errorf("SIGTERM: exit status %d, want 0", code)
	}
}

var lsnFormat = regexp.MustCompile(`^[0-9A-F]+/[0-9A-F]+$`)

// oneMessage returns the message received on channel (named without the
// "cache:invalidate:" prefix), failing the test now unless there is
// exactly one.
func oneMessage(t *testing.T, c *collector, channel string) received {
	t.Helper()
	msgs := c.on("cache:invalidate:" + channel)
	if len(msgs) != 1 {
		t.Fatalf("want 1 message on %s, got %d", channel, len(msgs))
	}
	return msgs[0]
}

// checkMessage asserts the message fields of the README's "Messages".
func checkMessage(t *testing.T, m received, op, table, rule string, keys []string) {
	t.Helper()
	if m.Msg == nil {
		t.Fatalf("message is not JSON: %s", m.Raw)
	}
	if m.Msg["v"] != float64(1) || m.Msg["op"] != op || m.Msg["table"] != table || m.Msg["rule"] != rule {
		t.Errorf("message %s: want v=1 op=%s table=%s rule=%s", m.Raw, op, table, rule)
	}
	var got []string
	for _, k := range m.Msg["keys"].([]any) {
		got = append(got, k.(string))
	}
	if !slices.Equal(got, keys) {
		t.Errorf("message keys %v, want %v", got, keys)
	}
	if lsn, _ := m.Msg["lsn"].(string); !lsnFormat.MatchString(lsn) {
		t.Errorf("lsn %q is not an upper-case PostgreSQL LSN", m.Msg["lsn"])
	}
	if xid, _ := m.Msg["xid"].(float64); xid <= 0 {
		t.Errorf("xid %v", m.Msg["xid"])
	}
	ct, _ := m.Msg["commit_time"].(string)
	ts, err := time.Parse("2006-01-02T15:04:05.000000Z", ct)
	if err != nil || time.Since(ts) > time.Hour || time.Since(ts) < -time.Minute {
		t.Errorf("commit_time %q: %v", ct, err)
	}
}

// TestRun_RowMovesTenant checks that an UPDATE invalidates the old and the
// new place of a row (REPLICA IDENTITY FULL provides the old values).
func TestRun_RowMovesTenant(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO shards VALUES ('t1', 5, 'p', 'a')`)
	f.startReady()
	f.set("tenant:t1:shard:5:structured", "tenant:t2:shard:5:structured", "tenant:t3:shard:5:structured")
	f.exec(`UPDATE shards SET tenant_id = 't2', payload = 'moved' WHERE tenant_id = 't1' AND id = 5`)
	f.sync()
	if f.exists("tenant:t1:shard:5:structured") || f.exists("tenant:t2:shard:5:structured") {
		t.Error("a row moving tenant must invalidate both the old and the new key")
	}
	if !f.exists("tenant:t3:shard:5:structured") {
		t.Error("an unrelated tenant's key was deleted")
	}
	if len(f.sub.on("cache:invalidate:shard:t1:5")) != 1 || len(f.sub.on("cache:invalidate:shard:t2:5")) != 1 {
		t.Errorf("want one message on each of shard:t1:5 and shard:t2:5, got %+v", f.sub.all())
	}
}

// TestRun_AbortedLeavesNoTrace checks that rolled back work, streamed or
// not, and rolled back subtransactions invalidate and publish nothing.
func TestRun_AbortedLeavesNoTrace(t *testing.T) {
	f := newFixture(t)
	f.startReady()
	f.set("tenant:ab:user:1:profile", "tenant:big:user:100:profile", "tenant:big:user:4999:profile",
		"tenant:sub:user:1:profile", "tenant:sub:user:2:profile", "tenant:ok:user:3:profile")

	// a small transaction that rolls back is never sent by PostgreSQL
	f.exec(`BEGIN; INSERT INTO users VALUES ('ab', 1, 'x'); ROLLBACK`)
	// large enough (logical_decoding_work_mem=64kB) to be streamed before it aborts
	f.exec(`BEGIN; INSERT INTO users SELECT 'big', g, repeat('x', 100) FROM generate_series(1, 5000) g; ROLLBACK`)
	// a streamed transaction that commits but rolls back a subtransaction
	// that was itself large enough to be streamed before its rollback
	f.exec(`BEGIN;
		INSERT INTO users SELECT 'filler', g, repeat('x', 100) FROM generate_series(10000, 13000) g;
		SAVEPOINT s1;
		INSERT INTO users SELECT 'sub', g, repeat('x', 100) FROM generate_series(1, 3000) g;
		ROLLBACK TO SAVEPOINT s1;
		INSERT INTO users VALUES ('ok', 3, 'z');
		COMMIT`)
	f.sync()
	for _, k := range []string{"tenant:ab:user:1:profile", "tenant:big:user:100:profile", "tenant:big:user:4999:profile",
		"tenant:sub:user:1:profile", "tenant:sub:user:2:profile"} {
		if !f.exists(k) {
			t.Errorf("key %s was deleted by an aborted (sub)transaction", k)
		}
	}
	if f.exists("tenant:ok:user:3:profile") {
		t.Error("the committed part of the transaction was not invalidated")
	}
	for _, m := range f.sub.all() {
		if strings.Contains(m.Channel, ":ab:") || strings.Contains(m.Channel, ":big:") || strings.Contains(m.Channel, ":sub:") {
			t.Errorf("aborted work published %s %s", m.Channel, m.Raw)
		}
	}
	if n := len(f.sub.on("cache:invalidate:user:filler:12345")); n != 1 {
		t.Errorf("streamed committed transaction: %d messages for one of its rows, want 1", n)
	}
}

// TestRun_StreamedCommit checks a transaction large enough to be streamed
// in chunks and committed: every row is invalidated.
func TestRun_StreamedCommit(t *testing.T) {
	f := newFixture(t)
	f.startReady()
	var keys []string
	for i := 1; i <= 4000; i += 399 {
		keys = append(keys, fmt.Sprintf("tenant:s:user:%d:profile", i))
	}
	f.set(keys...)
	f.exec(`INSERT INTO users SELECT 's', g, repeat('x', 200) FROM generate_series(1, 4000) g`)
	f.sync()
	for _, k := range keys {
		if f.exists(k) {
			t.Errorf("key %s of a streamed committed transaction survived", k)
		}
	}
}

// TestRun_LargeTransactionTail checks that a large transaction decoded in
// memory (not streamed) is applied as soon as it commits. Its reads gulp
// (see cdc/gulp.go): the socket wakes the daemon only once 16 KiB have
// arrived, and the end of the transaction is less than that; without the
// short read deadline that goes with it, the tail would wait for the next
// status update, 10 seconds away.
func TestRun_LargeTransactionTail(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf(`ALTER DATABASE %s SET logical_decoding_work_mem = '64MB'`, f.db))
	f.startReady()
	const rows = 3000 // more than gulpAfter, far less than 64MB of changes
	// whether a tail is left waiting depends on how the walsender's writes
	// and the daemon's reads interleave: a few transactions, so that a
	// missing deadline shows (without it, the test failed 8 runs in 8)
	for round := range 8 {
		// with nothing left to confirm the daemon's next read deadline is
		// the status update's, not the confirmation's 100ms
		lsn := f.currentLSN()
		eventually(t, 10*time.Second, "the previous transaction confirmed", func() bool { return f.slotConfirmed() >= lsn })
		tenant, from := fmt.Sprintf("g%d", round), round*rows+1
		first := fmt.Sprintf("tenant:%s:user:%d:profile", tenant, from)
		last := fmt.Sprintf("tenant:%s:user:%d:profile", tenant, from+rows-1)
		f.set(first, last)
		f.exec(fmt.Sprintf(`INSERT INTO users SELECT '%s', g, 'x' FROM generate_series(%d, %d) g`, tenant, from, from+rows-1))
		// well within the status interval (10s) and the server's keepalives
		eventually(t, 5*time.Second, "the large transaction's keys deleted", func() bool {
			return !f.exists(first) && !f.exists(last)
		})
		mine := func() int {
			n := 0
			for _, m := range f.sub.all() {
				if strings.HasPrefix(m.Channel, "cache:invalidate:user:"+tenant+":") {
					n++
				}
			}
			return n
		}
		eventually(t, 5*time.Second, "the large transaction's messages", func() bool { return mine() >= rows })
		if n := mine(); n != rows {
			t.Errorf("%s: %d messages, want %d", tenant, n, rows)
		}
	}
}

// TestRun_LargeTransactionEarlyDeletes checks a transaction decoded in
// memory and large enough to be applied in parts while it arrives (ADR
// 14): every key goes, each row gets its message with its key, and the
// journal has one entry for the whole transaction.
func TestRun_LargeTransactionEarlyDeletes(t *testing.T) {
	f := newFixture(t)
	f.exec(fmt.Sprintf(`ALTER DATABASE %s SET logical_decoding_work_mem = '64MB'`, f.db))
	d := f.startReady()
	const rows = 2*router.EarlyKeys + 1000
	key := func(i int) string { return fmt.Sprintf("tenant:e:user:%d:profile", i) }
	keys := []string{key(1), key(router.EarlyKeys), key(router.EarlyKeys + 1), key(rows)}
	f.set(keys...)
	f.exec(fmt.Sprintf(`INSERT INTO users SELECT 'e', g, 'x' FROM generate_series(1, %d) g`, rows))
	f.sync()
	first := f.sub.on("cache:invalidate:user:e:1")
	if len(first) != 1 {
		t.Fatalf("%d messages for row 1, want 1", len(first))
	}
	xid := fmt.Sprint(first[0].Msg["xid"])
	for _, k := range keys {
		if f.exists(k) {
			t.Errorf("key %s of the transaction survived", k)
		}
	}
	if n := strings.Count(d.out.String(), "handing on part of a transaction before its commit"); n != 2 {
		t.Errorf("%d early parts logged, want 2", n)
	}
	perRow := map[string]bool{}
	for _, m := range f.sub.all() {
		if !strings.HasPrefix(m.Channel, "cache:invalidate:user:e:") {
			continue
		}
		id := strings.TrimPrefix(m.Channel, "cache:invalidate:user:e:")
		want := fmt.Sprintf(`"keys":["tenant:e:user:%s:profile"]`, id)
		if !strings.Contains(m.Raw, want) || perRow[id] || fmt.Sprint(m.Msg["xid"]) != xid {
			t.Fatalf("message %s: %s (want %s, xid %s, once)", m.Channel, m.Raw, want, xid)
		}
		perRow[id] = true
	}
	if len(perRow) != rows {
		t.Errorf("%d rows got a message, want %d", len(perRow), rows)
	}
	entries, err := f.rdb.XRange(context.Background(), "cache:invalidate:_journal", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	mine := 0
	for _, e := range entries {
		if fmt.Sprint(e.Values["xid"]) == xid {
			mine++
			if k, _ := e.Values["keys"].(string); strings.Count(k, `"tenant:e:user:`) != rows {
				t.Errorf("the journal entry lists %d keys, want %d", strings.Count(k, `"tenant:e:user:`), rows)
			}
		}
	}
	if mine != 1 {
		t.Errorf("%d journal entries for xid %s, want 1", mine, xid)
	}
}

// TestRun_ShardedPubSubSingleRedis runs INVALIDATOR_REDIS_SHARDED_PUBSUB
// against a single Redis, where the publisher writes RESP itself: messages
// go out with SPUBLISH, to SSUBSCRIBE subscribers and not to PSUBSCRIBE
// ones, and the keys are deleted as usual.
func TestRun_ShardedPubSubSingleRedis(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_REDIS_SHARDED_PUBSUB=true")
	f.startReady()
	subs := map[string]*collector{}
	for _, id := range []string{"7", "8"} {
		subs[id] = sSubscribe(t, f.rdb, "cache:invalidate:user:t1:"+id)
	}
	f.set("tenant:t1:user:7:profile", "tenant:t1:user:8:profile")
	f.exec(`INSERT INTO users VALUES ('t1', 7, 'ann')`)
	f.exec(`INSERT INTO users VALUES ('t1', 8, 'bob')`)
	for id, sub := range subs {
		m := sub.waitFor(t, 30*time.Second, "sharded message for user "+id, func(received) bool { return true })
		checkMessage(t, m, "insert", "public.users", "user-profile", []string{"tenant:t1:user:" + id + ":profile"})
		if f.exists("tenant:t1:user:" + id + ":profile") {
			t.Errorf("user %s's key survived", id)
		}
	}
	// the pattern subscriber, which sees every classic PUBLISH, got
	// neither (a marker published now reaches it after anything
	// published before)
	if err := f.rdb.Publish(context.Background(), "cache:invalidate:marker", "x").Err(); err != nil {
		t.Fatal(err)
	}
	f.sub.waitFor(t, 30*time.Second, "the marker", func(m received) bool { return m.Channel == "cache:invalidate:marker" })
	for _, m := range f.sub.all() {
		if strings.HasPrefix(m.Channel, "cache:invalidate:user:") {
			t.Errorf("a PSUBSCRIBE subscriber got %s: sharded messages must go out with SPUBLISH", m.Channel)
		}
	}
}

// TestRun_GlobValuesCannotWiden checks that a tenant named "*" or "t[12]"
// deletes only its own pattern matches.
func TestRun_GlobValuesCannotWiden(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO shards VALUES ('*', 1, 'p', 'a'), ('t[12]', 1, 'p', 'a'), ('a?c', 1, 'p', 'a')`)
	f.startReady()
	others := []string{"tenant:t1:vsearch:q", "tenant:t2:vsearch:q", "tenant:abc:vsearch:q", "tenant:x:vsearch:q"}
	own := []string{`tenant:*:vsearch:q`, `tenant:t[12]:vsearch:q`, `tenant:a?c:vsearch:q`}
	f.set(append(append([]string{}, others...), own...)...)
	f.exec(`UPDATE shards SET payload = 'x'`)
	f.sync()
	for _, k := range others {
		if !f.exists(k) {
			t.Errorf("another tenant's key %s was deleted by a glob in a value", k)
		}
	}
	for _, k := range own {
		if f.exists(k) {
			t.Errorf("own key %s was not deleted", k)
		}
	}
}

// TestRun_SchemaChangeMidStream checks ADD and DROP COLUMN while streaming.
func TestRun_SchemaChangeMidStream(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO users VALUES ('t1', 1, 'a')`)
	f.startReady()
	f.set("tenant:t1:user:1:profile", "tenant:t1:user:2:profile", "tenant:t1:user:3:profile")
	f.exec(`UPDATE users SET name = 'b' WHERE id = 1`)
	f.exec(`ALTER TABLE users ADD COLUMN email text`)
	f.exec(`INSERT INTO users VALUES ('t1', 2, 'c', 'c@example.com')`)
	f.exec(`ALTER TABLE users DROP COLUMN name`)
	f.exec(`INSERT INTO users (tenant_id, id, email) VALUES ('t1', 3, 'd@example.com')`)
	f.sync()
	for _, k := range []string{"tenant:t1:user:1:profile", "tenant:t1:user:2:profile", "tenant:t1:user:3:profile"} {
		if f.exists(k) {
			t.Errorf("key %s survived a schema change", k)
		}
	}
}

// TestRun_RestartResumes checks that what is committed while the daemon is
// down (stopped cleanly or killed) is invalidated after it comes back.
func TestRun_RestartResumes(t *testing.T) {
	f := newFixture(t)
	d := f.startReady()
	f.exec(`INSERT INTO users VALUES ('t1', 1, 'a')`)
	f.sync()
	if code := d.stop(t); code != 0 {
		t.Fatalf("SIGTERM: exit status %d, want 0\n%s", code, d.out.String())
	}
	f.set("tenant:t1:user:1:profile", "tenant:t1:user:2:profile")
	f.exec(`UPDATE users SET name = 'b' WHERE id = 1; INSERT INTO users VALUES ('t1', 2, 'c')`)

	d = f.startReady()
	f.sync()
	if f.exists("tenant:t1:user:1:profile") || f.exists("tenant:t1:user:2:profile") {
		t.Error("changes committed while stopped were not invalidated after restart")
	}

	d.kill(t)
	f.set("tenant:t1:user:1:profile")
	f.exec(`DELETE FROM users WHERE id = 1`)
	f.startReady()
	f.sync()
	if f.exists("tenant:t1:user:1:profile") {
		t.Error("a change committed after kill -9 was not invalidated after restart")
	}
}

// TestRun_WideFormPastKeyBound checks that a transaction over the key
// bound deletes every affected key through the wide form, and only the
// affected tenants' keys.
func TestRun_WideFormPastKeyBound(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_MAX_KEYS_PER_TXN=50")
	f.startReady()
	var mine []string
	for i := 1; i <= 400; i += 37 {
		mine = append(mine, fmt.Sprintf("tenant:w1:shard:%d:structured", i), fmt.Sprintf("tenant:w2:shard:%d:structured", i))
	}
	f.set(mine...)
	f.set("tenant:w3:shard:1:structured", "tenant:w1:user:1:profile")
	f.exec(`INSERT INTO shards SELECT CASE WHEN g % 2 = 0 THEN 'w1' ELSE 'w2' END, g, 'p', 't' FROM generate_series(1, 400) g`)
	f.exec(`INSERT INTO shards SELECT CASE WHEN g % 2 = 0 THEN 'w2' ELSE 'w1' END, g, 'p', 't' FROM generate_series(1, 400) g`)
	f.sync()
	for _, k := range mine {
		if f.exists(k) {
			t.Errorf("key %s survived a transaction past the key bound", k)
		}
	}
	if !f.exists("tenant:w3:shard:1:structured") || !f.exists("tenant:w1:user:1:profile") {
		t.Error("the wide form deleted keys outside its scope")
	}
	wide := f.sub.on("cache:invalidate:shard:w1:*")
	if len(wide) == 0 {
		t.Errorf("no wide message on shard:w1:*; got %d messages", len(f.sub.all()))
	}
}

// TestRun_HealthzBeforePostgres checks that a daemon waiting for an
// unreachable PostgreSQL is alive (/healthz 200) but not ready (503).
func TestRun_HealthzBeforePostgres(t *testing.T) {
	f := newFixture(t)
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	f.env = append(f.env, fmt.Sprintf("INVALIDATOR_POSTGRES_URL=postgres://postgres@127.0.0.1:%d/x?sslmode=disable", port))
	d := f.start()
	eventually(t, waitLong, "/healthz 200 while PostgreSQL is unreachable", func() bool {
		resp, err := http.Get("http://" + d.addr + "/healthz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if code, body := d.readyz(); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("/readyz = %d %q, want 503 with role starting", code, body)
	}
	if code := d.stop(t); code != 0 {
		t.Errorf("SIGTERM while waiting for PostgreSQL: exit %d, want 0", code)
	}
}

// TestRun_Endpoints checks /healthz, /readyz, /status and that /metrics
// carries the README's metrics with the invalidator_ prefix.
func TestRun_Endpoints(t *testing.T) {
	f := newFixture(t)
	d := f.startReady()
	f.exec(`INSERT INTO users VALUES ('t1', 1, 'a')`)
	f.sync()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + d.addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != http.StatusOK || !strings.Contains(body, "active") {
		t.Errorf("/readyz %d %q", code, body)
	}
	code, body := get("/status")
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
		t.Fatalf("/status %d %q: %v", code, body, err)
	}
	for _, k := range []string{"role", "slot", "confirmed_lsn", "lag_bytes", "last_commit_time"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/status lacks %q: %s", k, body)
		}
	}
	if st["role"] != "active" || st["slot"] != f.db || !lsnFormat.MatchString(fmt.Sprint(st["confirmed_lsn"])) {
		t.Errorf("/status = %s", body)
	}
	if code, _ := get("/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ answers %d: pprof must not be served", code)
	}
	_, metrics := get("/metrics")
	for _, name := range []string{
		"invalidator_transactions_total", "invalidator_changes_total{op=\"insert\",table=\"public.users\"}",
		"invalidator_keys_deleted_total", "invalidator_messages_published_total{sink=\"redis\"}",
		"invalidator_replication_lag_bytes", "invalidator_commit_to_publish_seconds_bucket",
		"invalidator_batch_size_transactions_bucket", "invalidator_role{role=\"active\"} 1",
	} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	for _, line := range strings.Split(metrics, "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "invalidator_") && !strings.HasPrefix(line, "go_") && !strings.HasPrefix(line, "process_") {
			t.Errorf("metric without the invalidator_ prefix: %s", line)
		}
	}
}
