package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cachewire/invalidator/cdc"
)

// metric returns the sum of the samples of a metric whose labels contain
// every given label (e.g. `kind="redis"`), or 0 when absent.
func (d *daemon) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + d.addr + "/metrics")
	if err != nil {
		return 0
	}
	defer func() { _ = resp.Body.Close() }()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// readyz returns the status code and body of /readyz (0 when unreachable).
func (d *daemon) readyz() (int, string) {
	resp, err := http.Get("http://" + d.addr + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// peakRSS returns the process's peak resident set size in bytes.
func (d *daemon) peakRSS(t testing.TB) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read /proc status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

func (f *fixture) slotConfirmed() cdc.LSN {
	f.t.Helper()
	rows := f.query(fmt.Sprintf(`SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '%s'`, f.db))
	if len(rows) == 0 {
		return 0
	}
	var hi, lo uint32
	_, _ = fmt.Sscanf(rows[0][0], "%X/%X", &hi, &lo)
	return cdc.LSN(uint64(hi)<<32 | uint64(lo))
}

func (f *fixture) currentLSN() cdc.LSN {
	f.t.Helper()
	var hi, lo uint32
	_, _ = fmt.Sscanf(f.query(`SELECT pg_current_wal_lsn()::text`)[0][0], "%X/%X", &hi, &lo)
	return cdc.LSN(uint64(hi)<<32 | uint64(lo))
}

// TestFault_KillNineUnderLoad kills the daemon with SIGKILL at random moments
// while a writer commits single-row transactions; after the last restart
// every key is gone and every entity got a message: nothing was lost.
func TestFault_KillNineUnderLoad(t *testing.T) {
	f := newFixture(t)
	const rows = 3000
	keys := make([]string, rows)
	for i := range keys {
		keys[i] = fmt.Sprintf("tenant:k:user:%d:profile", i+1)
	}
	f.set(keys...)
	d := f.startReady()

	conn, err := pgconn.Connect(context.Background(), f.pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var committed atomic.Int64
	writerErr := make(chan error, 1)
	go func() {
		for i := 1; i <= rows; i++ {
			if _, err := conn.Exec(context.Background(), fmt.Sprintf("INSERT INTO users VALUES ('k', %d, 'n')", i)).ReadAll(); err != nil {
				writerErr <- err
				return
			}
			committed.Add(1)
		}
		writerErr <- nil
	}()
	for kill := 1; kill <= 4; kill++ {
		target := int64(kill*rows/5) + rand.Int64N(rows/10)
		eventually(t, waitLong, "writer progress", func() bool { return committed.Load() >= target })
		d.kill(t)
		d = f.startReady()
	}
	if err := <-writerErr; err != nil {
		t.Fatalf("writer: %v", err)
	}
	f.sync()
	var left []string
	for _, k := range keys {
		if f.exists(k) {
			left = append(left, k)
		}
	}
	if len(left) > 0 {
		t.Errorf("%d keys survived kill -9 restarts, e.g. %v", len(left), left[:min(5, len(left))])
	}
	seen := map[string]bool{}
	for _, m := range f.sub.all() {
		seen[m.Channel] = true
	}
	missing := 0
	for i := 1; i <= rows; i++ {
		if !seen[fmt.Sprintf("cache:invalidate:user:k:%d", i)] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d entities got no message", missing, rows)
	}
}

// TestFault_RedisDownAndBack stops Redis (keeping its data) while changes
// commit: nothing is confirmed meanwhile, and every key is deleted once
// Redis is back.
func TestFault_RedisDownAndBack(t *testing.T) {
	f := newFixture(t)
	d := f.startReady()
	f.set("tenant:r:user:1:profile", "tenant:r:user:2:profile", "tenant:r:user:3:profile")
	f.sync()
	f.sub.ps.Close() // the subscriber would only see a dead connection
	f.redis.Stop(t)
	f.exec(`INSERT INTO users VALUES ('r', 1, 'a'); INSERT INTO users VALUES ('r', 2, 'b')`)
	f.exec(`INSERT INTO users VALUES ('r', 3, 'c')`)
	end := f.currentLSN()
	eventually(t, waitLong, "the daemon to fail against the stopped Redis", func() bool {
		return d.metric(t, "invalidator_errors_total", `kind="redis"`) >= 2
	})
	if c := f.slotConfirmed(); c >= end {
		t.Errorf("confirmed %s while Redis was down, past the outage's commits (end %s)", c, end)
	}
	if code, _ := d.readyz(); code == http.StatusOK {
		t.Error("/readyz is 200 while Redis is down")
	}
	f.redis.Start(t)
	eventually(t, waitLong, "keys of the outage to be deleted", func() bool {
		return !f.exists("tenant:r:user:1:profile") && !f.exists("tenant:r:user:2:profile") && !f.exists("tenant:r:user:3:profile")
	})
	eventually(t, waitLong, "the slot to confirm past the outage", func() bool { return f.slotConfirmed() >= end })
	if d.exited() {
		t.Fatal("the daemon exited during the Redis outage")
	}
}

// TestFault_PostgresRestart restarts PostgreSQL mid-stream: the daemon
// reconnects and resumes from the slot.
func TestFault_PostgresRestart(t *testing.T) {
	f := newFixture(t)
	d := f.startReady()
	f.set("tenant:p:user:1:profile", "tenant:p:user:2:profile")
	f.exec(`INSERT INTO users VALUES ('p', 1, 'a')`)
	f.sync()
	sharedPG.Stop(t)
	sharedPG.Start(t)
	f.exec(`INSERT INTO users VALUES ('p', 2, 'b')`)
	f.sync()
	if f.exists("tenant:p:user:1:profile") || f.exists("tenant:p:user:2:profile") {
		t.Error("keys survived a PostgreSQL restart")
	}
	sharedPG.Kill(t)
	sharedPG.Start(t)
	f.set("tenant:p:user:1:profile")
	f.exec(`UPDATE users SET name = 'c' WHERE id = 1`)
	f.sync()
	if f.exists("tenant:p:user:1:profile") {
		t.Error("a key survived a PostgreSQL crash and restart")
	}
	if d.exited() {
		t.Fatal("the daemon exited")
	}
}

// TestFault_StandbyTakeover runs two replicas on one slot: the second waits
// as standby (503 with its role) and takes over when the first is killed.
func TestFault_StandbyTakeover(t *testing.T) {
	f := newFixture(t)
	active := f.startReady()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	f.env = append(f.env, fmt.Sprintf("INVALIDATOR_HTTP_ADDR=127.0.0.1:%d", port))
	standby := f.start()
	standby.addr = fmt.Sprintf("127.0.0.1:%d", port)
	eventually(t, waitLong, "the second replica to report standby", func() bool {
		code, body := standby.readyz()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "standby")
	})
	f.set("tenant:s:user:1:profile")
	active.kill(t)
	killed := time.Now()
	f.exec(`INSERT INTO users VALUES ('s', 1, 'a')`) // committed while no one streams
	eventually(t, waitLong, "the standby to take over", func() bool {
		code, _ := standby.readyz()
		return code == http.StatusOK
	})
	t.Logf("takeover: standby ready %s after kill -9 of the active replica", time.Since(killed).Round(time.Millisecond))
	f.sync()
	if f.exists("tenant:s:user:1:profile") {
		t.Error("a change committed during the takeover was not invalidated")
	}
}

// TestFault_IdleSlotAdvances writes heavily to a table outside the
// publication: the slot's confirmed position follows, and heartbeats flow.
func TestFault_IdleSlotAdvances(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_HEARTBEAT_INTERVAL=200ms")
	d := f.startReady()
	for i := 0; i < 5; i++ {
		f.exec(`INSERT INTO unpublished SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g`)
	}
	target := f.currentLSN()
	eventually(t, waitLong, "confirmed_flush_lsn to pass the unpublished writes", func() bool { return f.slotConfirmed() >= target })
	hb := f.sub.waitFor(t, waitLong, "a heartbeat message", func(m received) bool { return m.Channel == "cache:invalidate:_heartbeat" })
	if hb.Msg["op"] != "heartbeat" || hb.Msg["v"] != float64(1) || !lsnFormat.MatchString(fmt.Sprint(hb.Msg["lsn"])) {
		t.Errorf("heartbeat message %s", hb.Raw)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000000Z", fmt.Sprint(hb.Msg["time"])); err != nil {
		t.Errorf("heartbeat time: %v", err)
	}
	eventually(t, waitLong, "a probe round trip", func() bool { return d.metric(t, "invalidator_heartbeat_roundtrip_seconds") > 0 })
}

// TestFault_HugeTransaction updates 1,000,000 rows in one transaction: the
// daemon's peak RSS stays under the documented bound and every key of the
// transaction's tenants is deleted through the wide form.
func TestFault_HugeTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("1M rows: skipped in -short")
	}
	f := newFixture(t)
	f.exec(`INSERT INTO shards SELECT 'h' || (g % 4), g, 'p', 't' FROM generate_series(1, 1000000) g`)
	d := f.startReady()
	f.set("tenant:h1:shard:77:structured", "tenant:h3:shard:999999:structured", "tenant:other:shard:1:structured")
	f.exec(`UPDATE shards SET payload = 'q'`)
	f.sync()
	if f.exists("tenant:h1:shard:77:structured") || f.exists("tenant:h3:shard:999999:structured") {
		t.Error("keys of the 1M-row transaction survived")
	}
	if !f.exists("tenant:other:shard:1:structured") {
		t.Error("the wide form deleted another tenant's key")
	}
	const bound = 256 << 20
	rss := d.peakRSS(t)
	t.Logf("peak RSS with a 1,000,000-row transaction: %.1f MiB", float64(rss)/(1<<20))
	if rss > bound {
		t.Errorf("peak RSS %d MiB exceeds the %d MiB bound", rss>>20, bound>>20)
	}
	// an aborted streamed transaction of the same size leaves no trace
	f.set("tenant:h2:shard:2:structured")
	f.exec(`BEGIN; UPDATE shards SET payload = 'r'; ROLLBACK`)
	f.sync()
	if !f.exists("tenant:h2:shard:2:structured") {
		t.Error("an aborted 1M-row transaction invalidated a key")
	}
}

// TestFault_SlotLost drops the slot while the daemon is away: with the
// default (fail) it exits non-zero and says why; with resync it recreates
// the slot and flushes every rule's wide form before streaming.
func TestFault_SlotLost(t *testing.T) {
	f := newFixture(t)
	d := f.startReady()
	marker := slotMarker(t, sharedPG, f.db, f.db)
	eventually(t, waitLong, "the slot marker in Redis", func() bool { return f.exists(marker) })
	if code := d.stop(t); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	f.exec(fmt.Sprintf(`SELECT pg_drop_replication_slot('%s')`, f.db))

	d = f.start()
	if code := d.wait(t, waitLong); code == 0 || !strings.Contains(d.out.String(), "slot was lost") {
		t.Fatalf("fail mode: exit %d; want non-zero with an explanation:\n%s", code, d.out.String())
	}

	f.set("tenant:l1:shard:5:structured", "tenant:l2:user:9:profile", "session:zz", "tenant:l1:vsearch:q", "unrelated:key")
	f.env = append(f.env, "INVALIDATOR_ON_SLOT_LOST=resync")
	f.startReady()
	f.sync()
	for _, k := range []string{"tenant:l1:shard:5:structured", "tenant:l2:user:9:profile", "session:zz", "tenant:l1:vsearch:q"} {
		if f.exists(k) {
			t.Errorf("resync left %s", k)
		}
	}
	if !f.exists("unrelated:key") {
		t.Error("resync deleted a key no rule renders")
	}
	f.set("tenant:l1:user:1:profile")
	f.exec(`INSERT INTO users VALUES ('l1', 1, 'a')`)
	f.sync()
	if f.exists("tenant:l1:user:1:profile") {
		t.Error("not streaming after resync")
	}
}

// TestFault_BadData feeds rows the rules cannot render normally: the daemon
// counts and logs them and keeps streaming.
func TestFault_BadData(t *testing.T) {
	f := newFixture(t)
	rules := rulesYAML + `  - name: doc
    table: docs
    keys: ["doc:{slug}"]
    channel: "doc:{id}"
`
	if err := os.WriteFile(f.rules, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	f.exec(`CREATE TABLE docs(id int PRIMARY KEY, slug text, body text);
		ALTER TABLE users ALTER COLUMN tenant_id DROP NOT NULL;
		-- a slug large enough to be TOASTed out of line, and incompressible
		INSERT INTO docs SELECT 1, string_agg(md5(g::text), '') FROM generate_series(1, 400) g;`)
	slug := f.query(`SELECT slug FROM docs WHERE id = 1`)[0][0]
	d := f.startReady()

	t.Run("NULL key column", func(t *testing.T) {
		f.exec(`INSERT INTO users VALUES (NULL, 500, 'x')`)
		f.sync()
		if n := d.metric(t, "invalidator_render_failures_total", `rule="user-profile"`); n < 1 {
			t.Errorf("render failures for user-profile = %v, want >= 1", n)
		}
	})
	t.Run("enormous value", func(t *testing.T) {
		f.set("tenant:big:user:501:profile")
		f.exec(`INSERT INTO users VALUES (repeat('y', 200000), 501, 'x')`)
		f.sync()
		// the rule falls back to its wide form for that row: every user key
		if f.exists("tenant:big:user:501:profile") {
			t.Error("an enormous value did not fall back to the wide form")
		}
	})
	t.Run("TOASTed unchanged key column", func(t *testing.T) {
		f.set("doc:"+slug, "doc:other")
		f.exec(`UPDATE docs SET body = 'changed' WHERE id = 1`)
		f.sync()
		if f.exists("doc:" + slug) {
			t.Error("a key whose TOASTed value was not sent survived")
		}
		if n := d.metric(t, "invalidator_render_failures_total", `rule="doc"`); n < 1 {
			t.Errorf("render failures for doc = %v, want >= 1", n)
		}
	})
	t.Run("DELETE under REPLICA IDENTITY DEFAULT", func(t *testing.T) {
		// users is keyed by id only: the old row carries no tenant_id
		f.exec(`INSERT INTO users VALUES ('del', 600, 'x')`)
		f.set("tenant:del:user:600:profile", "tenant:del:user:601:profile")
		f.exec(`DELETE FROM users WHERE id = 600`)
		f.sync()
		if f.exists("tenant:del:user:600:profile") {
			t.Error("a deleted row's key survived: the unknown tenant must become '*', not skip the key")
		}
		if !f.exists("tenant:del:user:601:profile") {
			t.Error("another user's key was deleted")
		}
	})
	t.Run("rule column renamed mid-stream", func(t *testing.T) {
		f.exec(`INSERT INTO shards VALUES ('ren', 7, 'p', 't')`)
		f.sync()
		f.set("tenant:ren:shard:7:structured", "tenant:ren:shard:8:structured")
		f.exec(`ALTER TABLE shards RENAME COLUMN tenant_id TO org_id; UPDATE shards SET payload = 'q' WHERE id = 7`)
		f.sync()
		if f.exists("tenant:ren:shard:7:structured") {
			t.Error("after a rule column was renamed, the row's key survived")
		}
		if !f.exists("tenant:ren:shard:8:structured") {
			t.Error("another shard's key was deleted")
		}
		f.exec(`ALTER TABLE shards RENAME COLUMN org_id TO tenant_id`)
	})
	t.Run("table dropped mid-stream", func(t *testing.T) {
		f.exec(`INSERT INTO acl VALUES ('t', 1, 1); DROP TABLE acl`)
		f.sync()
	})
	t.Run("rule's table renamed", func(t *testing.T) {
		f.exec(`ALTER TABLE sessions RENAME TO sessions_old; INSERT INTO sessions_old VALUES ('q', 1); UPDATE sessions_old SET user_id = 2`)
		f.sync()
		if n := d.metric(t, "invalidator_errors_total", `kind="no_rule"`); n < 1 {
			t.Errorf("no_rule errors = %v, want >= 1", n)
		}
		if !strings.Contains(d.out.String(), "no rule names") {
			t.Error("the renamed table was not logged")
		}
	})
	if d.exited() {
		t.Fatalf("the daemon exited on bad data:\n%s", d.out.String())
	}
}

func freePort() (int, error) {
	return testsrvFreePort()
}
