package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// TestFailover_PostgresFailoverSlot runs the daemon through a two-host URL
// (target_session_attrs=read-write) on a PostgreSQL 17 or 18 primary with a
// physical standby that synchronises the daemon's failover slot. Under
// load, the primary is killed with SIGKILL and the standby promoted; the
// writers move to it. Every row committed on the surviving server must have
// its key deleted and its message published, the slot must carry on (no
// slot lost, no resync flush) and the daemon must reset its positions for
// the new timeline rather than confirm old ones to the new server.
func TestFailover_PostgresFailoverSlot(t *testing.T) {
	needIntegration(t)
	for _, v := range []int{17, 18} {
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) { testPostgresFailover(t, v) })
	}
}

func testPostgresFailover(t *testing.T, version int) {
	primary := testsrv.StartPostgresWith(t, testsrv.PostgresOptions{Version: version})
	primary.Exec(t, "postgres", "SELECT pg_create_physical_replication_slot('standby')")
	// the standby first: its Close then runs after the fixture's cleanup,
	// which drops the slot on the server the test ends on
	standby := primary.StartStandby(t, "standby", "sync_replication_slots=on")
	// set after the copy, so that the promoted standby does not inherit a
	// synchronized_standby_slots naming a slot it lacks (logical decoding
	// would wait for it)
	primary.Exec(t, "postgres", "ALTER SYSTEM SET synchronized_standby_slots = 'standby'")
	primary.Exec(t, "postgres", "SELECT pg_reload_conf()")
	f := newFixtureOn(t, primary)
	// the standby first: until the failover every connection is refused
	// there (read-only) and made to the next host
	both := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/%s?sslmode=disable&target_session_attrs=read-write",
		standby.Port, primary.Port, f.db)
	f.env = append(f.env, "INVALIDATOR_POSTGRES_URL="+both) // the last value wins
	// the fixture's database must have reached the standby: a connection
	// the standby refuses with "database does not exist" ends the host
	// list there instead of moving on to the primary
	eventually(t, 60*time.Second, "the fixture's database replayed on the standby", func() bool {
		return len(standby.Query(t, "postgres", "SELECT 1 FROM pg_database WHERE datname = '"+f.db+"'")) == 1
	})
	d := f.startReady()
	eventually(t, 60*time.Second, "the failover slot synchronised on the standby", func() bool {
		rows := standby.Query(t, "postgres", "SELECT failover, synced, temporary FROM pg_replication_slots WHERE slot_name = '"+f.db+"'")
		return len(rows) == 1 && rows[0][0] == "t" && rows[0][1] == "t" && rows[0][2] == "f"
	})

	// check sees the failover slot and the synchronising standby
	code, out := f.runWith(nil, "check")
	if code != exitOK || !strings.Contains(out, "is a failover slot; 1 physical standbys streaming") || !strings.Contains(out, "1 of synchronized_standby_slots (standby) streaming") {
		t.Errorf("check exit %d, want 0 reporting the failover slot and its standby:\n%s", code, out)
	}

	w := &writers{url: both, rdb: f}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); w.run(ctx, i*1_000_000+1) }()
	}
	stopWriters := func() { cancel(); wg.Wait() }
	defer stopWriters()

	eventually(t, 60*time.Second, "300 rows committed on the primary", func() bool { return w.committedOn(primary.Port) >= 300 })
	primary.Kill(t)
	killedAt := time.Now()
	standby.Exec(t, "postgres", "SELECT pg_promote()")
	f.pg = standby
	eventually(t, 120*time.Second, "300 rows committed on the promoted standby", func() bool { return w.committedOn(standby.Port) >= 300 })
	stopWriters()
	f.sync()

	// the truth is the surviving server's table
	var ids []int
	for _, r := range f.query("SELECT id FROM users WHERE tenant_id = 'fo' ORDER BY id") {
		id, _ := strconv.Atoi(r[0])
		ids = append(ids, id)
	}
	stale, missing, dup := 0, 0, 0
	for _, id := range ids {
		if f.exists(fmt.Sprintf("tenant:fo:user:%d:profile", id)) {
			stale++
		}
		switch n := len(f.sub.on(fmt.Sprintf("cache:invalidate:user:fo:%d", id))); {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	first := time.Time{}
	for _, id := range w.idsOn(standby.Port) {
		for _, m := range f.sub.on(fmt.Sprintf("cache:invalidate:user:fo:%d", id)) {
			if first.IsZero() || m.At.Before(first) {
				first = m.At
			}
		}
	}
	onSurvivor := map[int]bool{}
	for _, id := range ids {
		onSurvivor[id] = true
	}
	lost := 0 // acknowledged by the old primary, never replicated (asynchronous standby)
	for _, id := range w.idsOn(primary.Port) {
		if !onSurvivor[id] {
			lost++
		}
	}
	t.Logf("PostgreSQL %d failover: %d rows committed on the surviving server (%d acknowledged on the old primary, %d of them not replicated; %d on the new), "+
		"%d keys left stale, %d messages missing, %d rows published more than once, %s from the primary's death to the first invalidation on the new one",
		version, len(ids), w.committedOn(primary.Port), lost, w.committedOn(standby.Port), stale, missing, dup, first.Sub(killedAt).Round(time.Millisecond))
	if stale > 0 || missing > 0 {
		t.Errorf("%d keys left stale, %d messages missing", stale, missing)
	}
	if len(ids) < w.committedOn(standby.Port) {
		t.Errorf("only %d rows on the survivor, fewer than the %d committed on it", len(ids), w.committedOn(standby.Port))
	}
	// a position of the old timeline confirmed to the new server would be
	// past its WAL and skip what is written there next
	if r := f.query("SELECT confirmed_flush_lsn <= pg_current_wal_lsn() FROM pg_replication_slots WHERE slot_name = '" + f.db + "'"); len(r) != 1 || r[0][0] != "t" {
		t.Errorf("slot on the promoted server confirmed past its WAL: %v", r)
	}
	if d.exited() {
		t.Fatalf("the daemon exited:\n%s", d.out.String())
	}
	logs := d.out.String()
	for _, bad := range []string{"slot was lost", "resync"} {
		if strings.Contains(logs, bad) {
			t.Errorf("daemon log mentions %q: the slot did not survive the failover", bad)
		}
	}
	if !strings.Contains(logs, "the server changed (failover?): resetting positions") {
		t.Error("the daemon did not reset its positions for the new timeline")
	}
}

// writers insert one row per transaction, each after caching its key,
// through a multi-host URL, reconnecting after any error; they record the
// server each acknowledged commit came from.
type writers struct {
	url string
	rdb *fixture

	mu        sync.Mutex
	committed map[int][]int // server port -> ids acknowledged
}

func (w *writers) run(ctx context.Context, id int) {
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			c, err := pgconn.Connect(ctx, w.url)
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond): // reconnect pace, not synchronisation
				}
				continue
			}
			conn = c
		}
		key := fmt.Sprintf("tenant:fo:user:%d:profile", id)
		if err := w.rdb.rdb.Set(ctx, key, "cached", 0).Err(); err != nil {
			return
		}
		_, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO users VALUES ('fo', %d, 'w')", id)).ReadAll()
		if err != nil {
			_ = conn.Close(context.Background())
			conn = nil
			id++ // its fate is read from the survivor
			continue
		}
		port, _ := strconv.Atoi(conn.Conn().RemoteAddr().String()[strings.LastIndexByte(conn.Conn().RemoteAddr().String(), ':')+1:])
		w.mu.Lock()
		if w.committed == nil {
			w.committed = map[int][]int{}
		}
		w.committed[port] = append(w.committed[port], id)
		w.mu.Unlock()
		id++
	}
}

func (w *writers) committedOn(port int) int { return len(w.idsOn(port)) }

func (w *writers) idsOn(port int) []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]int(nil), w.committed[port]...)
}
