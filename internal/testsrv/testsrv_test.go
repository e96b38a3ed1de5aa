package testsrv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if port <= 0 || port > 65535 {
		t.Fatalf("FreePort() = %d, want a TCP port", port)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("port %d from FreePort is not bindable: %v", port, err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestWaitReadyFailsFastWithLog checks that a server exiting during startup
// is reported at once, with its exit status and log.
func TestWaitReadyFailsFastWithLog(t *testing.T) {
	dir := t.TempDir()
	p := &process{name: "sh", path: "/bin/sh", dir: dir, logPath: filepath.Join(dir, "log"), env: cleanEnv()}
	if err := p.start([]string{"-c", "echo boom-on-stderr >&2; exit 3"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := p.waitReady(time.Minute, func(context.Context) error { return errors.New("not yet") })
	if !exitedEarly(err) {
		t.Fatalf("waitReady error = %v, want an exitedError", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("waitReady took %s to notice the exit", took)
	}
	for _, want := range []string{"exit status 3", "boom-on-stderr"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if p.running() {
		t.Error("process still reported running after exit")
	}
}

func TestPostgres(t *testing.T) {
	pg := StartPostgres(t)
	pgid := pg.proc.cmd.Process.Pid
	var children []procEntry

	want := map[string]string{
		"wal_level":                 "logical",
		"logical_decoding_work_mem": "64kB",
		"fsync":                     "off",
		"synchronous_commit":        "on",
		"listen_addresses":          "127.0.0.1",
		"max_replication_slots":     "20",
		"max_wal_senders":           "20",
		"max_connections":           "200",
	}
	for name, value := range want {
		got := pg.Query(t, "postgres", "SHOW "+name)
		if len(got) != 1 || len(got[0]) != 1 || got[0][0] != value {
			t.Errorf("SHOW %s = %q, want %q", name, got, value)
		}
	}
	if os.Geteuid() == 0 {
		got := pg.Query(t, "postgres", "SELECT usename FROM pg_stat_activity WHERE pid = pg_backend_pid()")
		if len(got) != 1 || got[0][0] != "postgres" {
			t.Errorf("session user = %q, want postgres", got)
		}
	}

	url := pg.CreateDatabase(t, "app db")
	if want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/app%%20db?sslmode=disable", pg.Port); url != want {
		t.Errorf("CreateDatabase URL = %q, want %q", url, want)
	}
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect to URL from CreateDatabase: %v", err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}

	pg.Exec(t, "app db", `
		CREATE TABLE items (id int PRIMARY KEY, name text);
		INSERT INTO items VALUES (1, 'one'), (2, NULL);
		ALTER TABLE items REPLICA IDENTITY FULL;
		CREATE PUBLICATION pub FOR TABLE items;`)
	got := pg.Query(t, "app db", "SELECT 'ignored'; SELECT id, name FROM items ORDER BY id")
	assertRows(t, got, [][]string{{"1", "one"}, {"2", ""}})
	if got := pg.Query(t, "app db", "SELECT id FROM items WHERE false"); got == nil || len(got) != 0 {
		t.Errorf("empty query = %#v, want empty non-nil", got)
	}
	if _, err := pg.exec(ctx, "app db", "SELECT 1; SELECT * FROM no_such_table"); err == nil || !strings.Contains(err.Error(), "no_such_table") {
		t.Errorf("exec of failing SQL: err = %v, want the server's error", err)
	}

	slot := pg.Query(t, "app db", "SELECT slot_name, lsn IS NOT NULL FROM pg_create_logical_replication_slot('s', 'pgoutput')")
	assertRows(t, slot, [][]string{{"s", "t"}})

	// A large transaction in the slot: logical decoding must work (it spills
	// or streams beyond logical_decoding_work_mem=64kB).
	pg.Exec(t, "app db", "INSERT INTO items SELECT g, repeat('x', 100) FROM generate_series(3, 3000) g")
	changes := pg.Query(t, "app db",
		"SELECT count(*) FROM pg_logical_slot_peek_binary_changes('s', NULL, NULL, 'proto_version', '1', 'publication_names', 'pub')")
	if len(changes) != 1 || changes[0][0] == "0" {
		t.Errorf("logical decoding returned %q changes, want > 0", changes)
	}

	// Clean stop and start keep data, slot and port.
	children = childrenOf(pgid)
	pg.Stop(t)
	if pg.proc.running() || groupAlive(pgid) {
		t.Fatal("postgres processes left after Stop")
	}
	for _, c := range children {
		if c.alive() {
			t.Errorf("postmaster child %d still alive after Stop", c.pid)
		}
	}
	if c, err := pgconn.Connect(ctx, url); err == nil {
		_ = c.Close(ctx)
		t.Fatal("connected to postgres after Stop")
	}
	port := pg.Port
	pg.Start(t)
	if pg.Port != port {
		t.Errorf("port changed across Stop/Start: %d -> %d", port, pg.Port)
	}
	assertRows(t, pg.Query(t, "app db", "SELECT count(*) FROM items"), [][]string{{"3000"}})
	assertRows(t, pg.Query(t, "app db", "SELECT slot_name FROM pg_replication_slots"), [][]string{{"s"}})

	// Crash: every server process dies, a stale postmaster.pid remains,
	// and Start recovers with committed data intact.
	pg.Exec(t, "app db", "INSERT INTO items VALUES (5000, 'before crash')")
	pgid = pg.proc.cmd.Process.Pid
	children = childrenOf(pgid)
	if len(children) < 3 {
		t.Errorf("postmaster has %d children, expected its auxiliary processes", len(children))
	}
	pg.Kill(t)
	if pg.proc.running() || groupAlive(pgid) {
		t.Fatal("postgres processes left after Kill")
	}
	for _, c := range children {
		if c.alive() {
			t.Errorf("postmaster child %d still alive after Kill", c.pid)
		}
	}
	if _, err := os.Stat(filepath.Join(pg.dataDir, "postmaster.pid")); err != nil {
		t.Errorf("expected a stale postmaster.pid after Kill: %v", err)
	}
	pg.Start(t)
	assertRows(t, pg.Query(t, "app db", "SELECT name FROM items WHERE id = 5000"), [][]string{{"before crash"}})
	assertRows(t, pg.Query(t, "app db", "SELECT slot_name FROM pg_replication_slots"), [][]string{{"s"}})
	if log, err := os.ReadFile(pg.LogPath()); err != nil || !strings.Contains(string(log), "not properly shut down") {
		t.Errorf("server log does not show crash recovery (err %v)", err)
	}
	pg.Exec(t, "app db", "SELECT pg_drop_replication_slot('s')")

	// Close removes everything and leaves no process.
	pgid = pg.proc.cmd.Process.Pid
	if err := pg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pg.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if groupAlive(pgid) {
		t.Error("postgres processes left after Close")
	}
	if _, err := os.Stat(pg.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postgres dir %s still there after Close (stat: %v)", pg.dir, err)
	}
}

// TestPostgresCloseWhileKilled checks Close after a crash that was not
// followed by Start.
func TestPostgresCloseWhileKilled(t *testing.T) {
	pg, err := NewPostgres()
	if err != nil {
		t.Fatal(err)
	}
	pg.Exec(t, "postgres", "CREATE TABLE t (x int)")
	pg.Kill(t)
	if err := pg.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pg.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postgres dir %s still there after Close (stat: %v)", pg.dir, err)
	}
}

// TestPostgresStartFailsFastWithLog checks that a server that cannot start
// is reported at once with its log, and that a later Start still works.
func TestPostgresStartFailsFastWithLog(t *testing.T) {
	pg := StartPostgres(t)
	pg.Exec(t, "postgres", "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
	pg.Stop(t)

	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", pg.Port))
	if err != nil {
		t.Fatalf("occupy postgres port: %v", err)
	}
	start := time.Now()
	err = pg.start()
	if closeErr := l.Close(); closeErr != nil {
		t.Fatal(closeErr)
	}
	if !exitedEarly(err) {
		t.Fatalf("start on a taken port: err = %v, want an exitedError", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("start took %s to fail", took)
	}
	if !strings.Contains(err.Error(), "could not") {
		t.Errorf("error does not carry the server log: %v", err)
	}

	pg.Start(t)
	assertRows(t, pg.Query(t, "postgres", "SELECT x FROM kept"), [][]string{{"42"}})
}

func TestRedis(t *testing.T) {
	r := StartRedis(t)
	ctx := context.Background()
	if want := fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port); r.URL() != want {
		t.Errorf("URL() = %q, want %q", r.URL(), want)
	}
	opts, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatalf("parse URL: %v", err)
	}
	if opts.Addr != r.Addr() || opts.DB != 0 {
		t.Errorf("URL parses to addr %q db %d, want %q db 0", opts.Addr, opts.DB, r.Addr())
	}

	c := r.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if err := c.HSet(ctx, "h", "f", "1").Err(); err != nil {
		t.Fatalf("HSET: %v", err)
	}
	cfg, err := c.ConfigGet(ctx, "appendonly").Result()
	if err != nil || cfg["appendonly"] != "yes" {
		t.Errorf("CONFIG GET appendonly = %v, %v; want yes", cfg, err)
	}
	cfg, err = c.ConfigGet(ctx, "bind").Result()
	if err != nil || cfg["bind"] != "127.0.0.1" {
		t.Errorf("CONFIG GET bind = %v, %v; want 127.0.0.1", cfg, err)
	}

	pid := r.proc.cmd.Process.Pid
	r.Stop(t)
	if r.proc.running() || groupAlive(pid) {
		t.Fatal("redis still running after Stop")
	}
	if conn, err := net.Dial("tcp", r.Addr()); err == nil {
		_ = conn.Close()
		t.Fatal("redis port accepts connections while redis is stopped")
	}
	r.Start(t)

	// The old client reconnects by itself.
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Errorf("GET k after restart = %q, %v; want v", got, err)
	}
	if got, err := r.Client(t).HGet(ctx, "h", "f").Result(); err != nil || got != "1" {
		t.Errorf("HGET h f after restart = %q, %v; want 1", got, err)
	}

	pid = r.proc.cmd.Process.Pid
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if groupAlive(pid) {
		t.Error("redis still running after Close")
	}
	if _, err := os.Stat(r.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("redis dir %s still there after Close (stat: %v)", r.dir, err)
	}
}

func TestNATS(t *testing.T) {
	n := StartNATS(t, false)
	if want := fmt.Sprintf("nats://127.0.0.1:%d", n.Port); n.URL() != want {
		t.Errorf("URL() = %q, want %q", n.URL(), want)
	}
	roundTrip := func() {
		t.Helper()
		nc, err := nats.Connect(n.URL())
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer nc.Close()
		sub, err := nc.SubscribeSync("greet")
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		if err := nc.Publish("greet", []byte("hello")); err != nil {
			t.Fatalf("publish: %v", err)
		}
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil || string(msg.Data) != "hello" {
			t.Fatalf("NextMsg = %v, %v; want hello", msg, err)
		}
	}
	roundTrip()

	pid := n.proc.cmd.Process.Pid
	n.Stop(t)
	if n.proc.running() || groupAlive(pid) {
		t.Fatal("nats still running after Stop")
	}
	if nc, err := nats.Connect(n.URL(), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("connected to nats while stopped")
	}
	n.Start(t)
	roundTrip()

	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(n.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("nats dir %s still there after Close (stat: %v)", n.dir, err)
	}
}

func TestNATSJetStream(t *testing.T) {
	n := StartNATS(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "EVENTS", Subjects: []string{"events.>"}, Storage: jetstream.FileStorage,
	}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, "events.x", fmt.Appendf(nil, "m%d", i)); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	nc.Close()

	n.Stop(t)
	n.Start(t)

	nc2, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatalf("connect after restart: %v", err)
	}
	defer nc2.Close()
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js2.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("stream has %d messages after restart, want 3", info.State.Msgs)
	}
	msg, err := stream.GetMsg(ctx, 2)
	if err != nil || string(msg.Data) != "m1" {
		t.Errorf("message 2 after restart = %v, %v; want m1", msg, err)
	}
	if _, err := os.Stat(filepath.Join(n.storeDir, "jetstream")); err != nil {
		t.Errorf("JetStream store not in the server's own dir: %v", err)
	}
}

// childrenOf returns the current children of pid.
func childrenOf(pid int) []procEntry {
	var children []procEntry
	for _, pe := range listProcs() {
		if pe.ppid == pid {
			children = append(children, pe)
		}
	}
	return children
}

func assertRows(t *testing.T, got, want [][]string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != len(want) {
		t.Errorf("rows = %q, want %q", got, want)
	}
}
