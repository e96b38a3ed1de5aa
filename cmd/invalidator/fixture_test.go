package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// Shared by the package's integration tests: one PostgreSQL cluster (each
// test has its own database and slot) and the daemon binary built once.
var (
	sharedPG  *testsrv.Postgres
	binary    string
	dbCounter atomic.Int32
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Getenv("INVALIDATOR_SKIP_INTEGRATION") != "" {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "invalidator-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	binary = filepath.Join(dir, "invalidator")
	build := exec.Command(goTool(), "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build invalidator:", err)
		return 1
	}
	sharedPG, err = testsrv.NewPostgres()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start postgres:", err)
		return 1
	}
	defer func() { _ = sharedPG.Close() }()
	return m.Run()
}

// goTool finds the go command: on PATH, else where the Debian-style install
// and .ci/run put it.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func needIntegration(tb testing.TB) {
	tb.Helper()
	if sharedPG == nil {
		tb.Skip("INVALIDATOR_SKIP_INTEGRATION is set")
	}
}

const schema = `
CREATE TABLE shards(tenant_id text NOT NULL, id int NOT NULL, payload text, title text, PRIMARY KEY (tenant_id, id));
ALTER TABLE shards REPLICA IDENTITY FULL;
CREATE TABLE users(tenant_id text NOT NULL, id int PRIMARY KEY, name text);
CREATE TABLE acl(tenant_id text NOT NULL, user_id int NOT NULL, shard_id int NOT NULL, PRIMARY KEY (tenant_id, user_id, shard_id));
CREATE TABLE sessions(token_hash text PRIMARY KEY, user_id int);
CREATE TABLE sentinel(id serial PRIMARY KEY);
CREATE TABLE unpublished(id int, v text);
`

const rulesYAML = `version: 1
key_prefix: ""
channel_prefix: "cache:invalidate:"
rules:
  - name: shard-structured
    table: public.shards
    on: [insert, update, delete]
    changed: [payload, title]
    keys:
      - "tenant:{tenant_id}:shard:{id}:structured"
    patterns:
      - "tenant:{tenant_id}:vsearch:*"
    channel: "shard:{tenant_id}:{id}"
    scope: [tenant_id]
  - name: user-profile
    table: users
    keys: ["tenant:{tenant_id}:user:{id}:profile"]
    channel: "user:{tenant_id}:{id}"
  - name: acl
    table: acl
    keys: ["tenant:{tenant_id}:acl:{user_id}:{shard_id}"]
    channel: "acl:{tenant_id}:{user_id}"
  - name: session
    table: sessions
    on: [update, delete]
    keys: ["session:{token_hash}"]
  - name: sentinel
    table: sentinel
    channel: "sentinel:{id}"
`

// fixture is one test's world: a database with the demo schema, a Redis, a
// rules file, a subscriber on every channel, and the daemon's settings.
type fixture struct {
	t     testing.TB
	pg    *testsrv.Postgres // sharedPG unless the test runs its own server
	db    string
	pgURL string
	redis *testsrv.Redis
	rdb   *redis.Client
	rules string
	env   []string
	sub   *collector
}

func newFixture(t testing.TB, extraEnv ...string) *fixture {
	t.Helper()
	needIntegration(t)
	return newFixtureOn(t, sharedPG, extraEnv...)
}

// newFixtureOn is newFixture on server pg instead of the shared one.
func newFixtureOn(t testing.TB, pg *testsrv.Postgres, extraEnv ...string) *fixture {
	t.Helper()
	return newDatabaseFixtureOn(t, pg, rulesYAML).withRedis(extraEnv...)
}

// withRedis completes a database fixture: a Redis, the daemon's setting
// for it and extraEnv, and a subscriber on every channel.
func (f *fixture) withRedis(extraEnv ...string) *fixture {
	t := f.t
	t.Helper()
	f.redis = testsrv.StartRedis(t)
	f.rdb = f.redis.Client(t)
	f.env = append(append(f.env, "INVALIDATOR_REDIS_URL="+f.redis.URL()), extraEnv...)
	f.sub = newSubscriber(t, f.rdb, "cache:invalidate:*")
	return f
}

// newDatabaseFixture is the part of a fixture every test shares: its own
// database with the demo schema (and slot, dropped at cleanup), a rules
// file, and the daemon's environment without any Redis setting.
func newDatabaseFixture(t testing.TB, rules string) *fixture {
	t.Helper()
	needIntegration(t)
	return newDatabaseFixtureOn(t, sharedPG, rules)
}

// newDatabaseFixtureOn is newDatabaseFixture on server pg.
func newDatabaseFixtureOn(t testing.TB, pg *testsrv.Postgres, rules string) *fixture {
	t.Helper()
	f := &fixture{t: t, pg: pg, db: fmt.Sprintf("itest%d", dbCounter.Add(1))}
	f.pgURL = pg.CreateDatabase(t, f.db)
	pg.Exec(t, f.db, schema)
	t.Cleanup(func() {
		// the slot is cluster-wide: drop it so the shared server stays clean
		// (f.pg: the server the test ended on)
		f.pg.Exec(t, f.db, fmt.Sprintf(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '%s' AND NOT active`, f.db))
	})
	f.rules = filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(f.rules, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := testsrv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f.env = []string{
		"INVALIDATOR_POSTGRES_URL=" + f.pgURL,
		"INVALIDATOR_RULES=" + f.rules,
		"INVALIDATOR_SLOT=" + f.db,
		"INVALIDATOR_PUBLICATION=" + f.db,
		fmt.Sprintf("INVALIDATOR_HTTP_ADDR=127.0.0.1:%d", port),
		"INVALIDATOR_LOG_LEVEL=debug",
	}
	return f
}

func (f *fixture) exec(sql string) { f.t.Helper(); f.pg.Exec(f.t, f.db, sql) }

func (f *fixture) query(sql string) [][]string {
	f.t.Helper()
	return f.pg.Query(f.t, f.db, sql)
}

func (f *fixture) httpAddr() string {
	for _, e := range f.env {
		if v, ok := strings.CutPrefix(e, "INVALIDATOR_HTTP_ADDR="); ok {
			return v
		}
	}
	return ""
}

// set stores keys with a value so tests can see which ones get deleted.
func (f *fixture) set(keys ...string) {
	f.t.Helper()
	for _, k := range keys {
		if err := f.rdb.Set(context.Background(), k, "cached", 0).Err(); err != nil {
			f.t.Fatalf("SET %s: %v", k, err)
		}
	}
}

func (f *fixture) exists(key string) bool {
	f.t.Helper()
	n, err := f.rdb.Exists(context.Background(), key).Result()
	if err != nil {
		f.t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

// sync commits a sentinel row and waits for its message: the daemon applies
// in commit order, so everything committed before has been applied too.
func (f *fixture) sync() {
	f.t.Helper()
	rows := f.query("INSERT INTO sentinel DEFAULT VALUES RETURNING id")
	ch := "cache:invalidate:sentinel:" + rows[0][0]
	f.sub.waitFor(f.t, 60*time.Second, "sentinel message "+ch, func(m received) bool { return m.Channel == ch })
}

// received is one pub/sub message with its JSON decoded.
type received struct {
	Channel string
	Raw     string
	Msg     map[string]any
	At      time.Time // when the subscriber got it
}

// collector collects every message on a pattern for the test's lifetime.
type collector struct {
	mu   sync.Mutex
	msgs []received
	ps   *redis.PubSub
	done chan struct{}
}

func newSubscriber(t testing.TB, rdb *redis.Client, pattern string) *collector {
	t.Helper()
	ps := rdb.PSubscribe(context.Background(), pattern)
	if _, err := ps.Receive(context.Background()); err != nil { // the subscription confirmation
		t.Fatalf("psubscribe: %v", err)
	}
	return collect(t, ps)
}

// collect records every message of a PubSub whose subscription is already
// confirmed, for the test's lifetime.
func collect(t testing.TB, ps *redis.PubSub) *collector {
	s := &collector{ps: ps, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for m := range ps.Channel() {
			r := received{Channel: m.Channel, Raw: m.Payload, At: time.Now()}
			_ = json.Unmarshal([]byte(m.Payload), &r.Msg)
			s.mu.Lock()
			s.msgs = append(s.msgs, r)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ps.Close()
		<-s.done
	})
	return s
}

// all returns the messages received so far.
func (s *collector) all() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

// on returns the messages received on a channel.
func (s *collector) on(channel string) []received {
	var out []received
	for _, m := range s.all() {
		if m.Channel == channel {
			out = append(out, m)
		}
	}
	return out
}

// waitFor polls until some message satisfies ok.
func (s *collector) waitFor(t testing.TB, timeout time.Duration, what string, ok func(received) bool) received {
	t.Helper()
	var found received
	eventually(t, timeout, what, func() bool {
		for _, m := range s.all() {
			if ok(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// daemon is a running invalidator process.
type daemon struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
	addr string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs the daemon binary with the fixture's environment; it is
// killed at cleanup if the test did not stop it.
func (f *fixture) start(args ...string) *daemon {
	f.t.Helper()
	if len(args) == 0 {
		args = []string{"run"}
	}
	d := &daemon{out: &syncBuffer{}, done: make(chan struct{}), addr: f.httpAddr()}
	d.cmd = exec.Command(binary, args...)
	d.cmd.Env = append(os.Environ(), f.env...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		f.t.Fatalf("start daemon: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	t := f.t
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("daemon output:\n%s", d.out.String())
		}
	})
	return d
}

// startReady starts the daemon and waits until it streams as the active consumer.
func (f *fixture) startReady() *daemon {
	f.t.Helper()
	d := f.start()
	d.waitReady(f.t)
	return d
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *daemon) waitReady(t testing.TB) {
	t.Helper()
	eventually(t, 30*time.Second, "daemon /readyz 200", func() bool {
		if d.exited() {
			t.Fatalf("daemon exited before ready: %v\n%s", d.err, d.out.String())
		}
		resp, err := http.Get("http://" + d.addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// stop sends SIGTERM and returns the exit status.
func (d *daemon) stop(t testing.TB) int {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	return d.wait(t, 30*time.Second)
}

// kill sends SIGKILL and waits for the process to go.
func (d *daemon) kill(t testing.TB) {
	t.Helper()
	_ = d.cmd.Process.Kill()
	d.wait(t, 30*time.Second)
}

func (d *daemon) wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		t.Fatalf("daemon did not exit within %s\n%s", timeout, d.out.String())
	}
	return d.cmd.ProcessState.ExitCode()
}

func testsrvFreePort() (int, error) { return testsrv.FreePort() }
