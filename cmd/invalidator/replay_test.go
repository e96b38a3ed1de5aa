package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/router"
)

func TestPlainPredicate(t *testing.T) {
	for _, ok := range []string{
		"tenant_id = 't1'",
		"id > 5 AND (title IS NULL OR title <> 'a;b')",
		`"odd;col" = 'it''s'`,
		"payload LIKE '%--%'",
		"updated_at > now() - interval '2 hours'",
		"lower(title) IS NOT DISTINCT FROM 'a' AND id::text IN ('1', '2') AND NOT (id BETWEEN 3 AND 4)",
		`title = E'it\'s'`,
	} {
		if err := checkPredicate(ok, nil); err != nil {
			t.Errorf("checkPredicate(%q) = %v, want accepted", ok, err)
		}
	}
	for _, bad := range []string{
		"true; DROP TABLE users",
		"true) UNION SELECT 1, 2, 3, 4 FROM pg_authid --",
		"tenant_id = 't1') OR (true",
		"true /* hide */",
		"id = $1",
		"$$; DROP TABLE x; $$",
		"name = 'unterminated",
		"(",
		"   ",
	} {
		if err := checkPredicate(bad, nil); err == nil {
			t.Errorf("checkPredicate(%q) accepted, want rejected", bad)
		}
	}
}

func TestExplain(t *testing.T) {
	rules, err := router.LoadRules("../../demo/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := explain(rules, "shards", `{"tenant_id":"t2","id":42,"title":"b","payload":"p"}`, `{"tenant_id":"t1","id":42,"title":"a","payload":"p"}`, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"update on public.shards", "tenant:t1:shard:42:structured", "tenant:t2:shard:42:structured",
		"tenant:t1:vsearch:*", "cache:invalidate:shard:t2:42  {\"v\":1,\"op\":\"update\""} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	out, err = explain(rules, "users", `{"tenant_id":null,"id":7}`, "", "")
	if err != nil || !strings.Contains(out, `column "tenant_id" is NULL in --row`) {
		t.Errorf("NULL note missing (%v):\n%s", err, out)
	}
	if _, err := explain(rules, "users", `[1]`, "", ""); err == nil {
		t.Error("a non-object row was accepted")
	}
}

// TestExplain_BadRows: what is not exactly one JSON object, or a number in
// a form PostgreSQL would not send, is refused with the flag's name.
func TestExplain_BadRows(t *testing.T) {
	rules, err := router.LoadRules("../../demo/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ row, old, want string }{
		{`{"tenant_id":"t1","id":1} xx`, "", "--row: trailing data"},
		{`{"tenant_id":"t1","id":1}{}`, "", "--row: trailing data"},
		{`{"tenant_id":"t1","id":1}`, `{"id":1}]`, "--old: trailing data"},
		{`null`, "", "--row: not a JSON object: null"},
		{`{"tenant_id":"t1","id":1}`, `null`, "--old: not a JSON object: null"},
		{`{"tenant_id":"t1","id":1.0e2}`, "", `column "id": 1.0e2 is not written as PostgreSQL sends`},
		{`{"tenant_id":"t1","id":1E2}`, "", `an integer or numeric column sends "100"`},
		{`{"tenant_id":"t1","id":-0}`, "", `column "id": -0 is not`},
	} {
		if _, err := explain(rules, "shards", c.row, c.old, ""); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("explain(%s, %s) = %v, want an error with %q", c.row, c.old, err, c.want)
		}
	}
	out, err := explain(rules, "shards", `{"tenant_id":"t1","id":100,"title":-2.50}`, "", "")
	if err != nil || !strings.Contains(out, "tenant:t1:shard:100:structured") {
		t.Errorf("plain numbers: %v\n%s", err, out)
	}
}

// TestExplain_NotesSayWhatIsDone: a NULL or a missing id is described as
// what the router does with it, once.
func TestExplain_NotesSayWhatIsDone(t *testing.T) {
	rules, err := router.LoadRules("../../demo/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := explain(rules, "shards", `{"tenant_id":"acme","title":"x"}`, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`column "id" is not in --row`,
		`rule "shard-structured" therefore deletes no key and 2 patterns (tenant:acme:shard:*:structured, tenant:acme:vsearch:*) and publishes 1 message (shard:acme:*)`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing id: output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "skipped") {
		t.Errorf("missing id: a key said to be skipped, though it is flushed as a pattern:\n%s", out)
	}
	out, err = explain(rules, "shards", `{"tenant_id":"acme","id":null}`, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, `column "id" is NULL in --row`); n != 1 {
		t.Errorf("NULL id: the note appears %d times, want once:\n%s", n, out)
	}
	if want := `rule "shard-structured" therefore deletes no key and 1 pattern (tenant:acme:vsearch:*) and publishes no message`; !strings.Contains(out, want) {
		t.Errorf("NULL id: output lacks %q:\n%s", want, out)
	}
	// a column only the new row names is unknown in the old one, not NULL
	out, err = explain(rules, "shards", `{"tenant_id":"acme","id":1}`, `{"tenant_id":"acme"}`, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`column "id" is not in --old`, "  tenant:acme:shard:*:structured\n", "  tenant:acme:shard:1:structured\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("id missing from --old: output lacks %q:\n%s", want, out)
		}
	}
}

func TestReplay(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO shards VALUES ('t1', 1, 'p', 'a'), ('t1', 2, 'p', 'b'), ('t2', 1, 'p', 'c');
		INSERT INTO users VALUES ('t1', 10, 'ann'), ('t2', 20, 'bob')`)
	d := f.startReady()
	f.exec(`UPDATE users SET name = 'x' WHERE id = 10`)
	f.exec(`UPDATE users SET name = 'y' WHERE id = 20`)
	f.sync()
	first := f.sub.on("cache:invalidate:user:t1:10")[0].Msg["lsn"].(string)
	if code := d.stop(t); code != 0 {
		t.Fatalf("stop: %d", code)
	}

	t.Run("journal dry run changes nothing", func(t *testing.T) {
		f.set("tenant:t1:user:10:profile", "tenant:t2:user:20:profile")
		code, out, errOut := f.cli("replay", "--since", "1h", "--dry-run")
		if code != 0 || !strings.Contains(out, "would delete  tenant:t1:user:10:profile") || !strings.Contains(out, "would publish cache:invalidate:user:t1:10") {
			t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
		}
		if !f.exists("tenant:t1:user:10:profile") {
			t.Error("dry run deleted a key")
		}
	})
	t.Run("journal by LSN", func(t *testing.T) {
		before := len(f.sub.on("cache:invalidate:user:t1:10"))
		code, out, errOut := f.cli("replay", "--from-lsn", first, "--to-lsn", first)
		if code != 0 || !strings.Contains(out, "replayed 1 journal entries") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if f.exists("tenant:t1:user:10:profile") || !f.exists("tenant:t2:user:20:profile") {
			t.Error("--from-lsn/--to-lsn did not replay exactly the one transaction")
		}
		f.sub.waitFor(t, waitLong, "the re-sent message", func(received) bool { return len(f.sub.on("cache:invalidate:user:t1:10")) > before })
	})
	t.Run("journal since", func(t *testing.T) {
		code, out, _ := f.cli("replay", "--since", "1h")
		if code != 0 || f.exists("tenant:t2:user:20:profile") || !strings.Contains(out, "messages published") {
			t.Errorf("--since 1h: exit %d, key left = %v\n%s", code, f.exists("tenant:t2:user:20:profile"), out)
		}
	})
	t.Run("table with where", func(t *testing.T) {
		f.set("tenant:t1:shard:1:structured", "tenant:t1:shard:2:structured", "tenant:t2:shard:1:structured", "tenant:t1:vsearch:q")
		code, out, errOut := f.cli("replay", "--table", "shards", "--where", "tenant_id = 't1'", "--batch", "1")
		if code != 0 || !strings.Contains(out, "replayed 2 rows") {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		if f.exists("tenant:t1:shard:1:structured") || f.exists("tenant:t1:shard:2:structured") || f.exists("tenant:t1:vsearch:q") {
			t.Error("t1's shard keys survived replay --table")
		}
		if !f.exists("tenant:t2:shard:1:structured") {
			t.Error("replay --where deleted a row it did not select")
		}
	})
	t.Run("where cannot inject", func(t *testing.T) {
		for _, where := range []string{"true; DROP TABLE users", "true) UNION SELECT 1,2,3,4 --"} {
			if code, _, errOut := f.cli("replay", "--table", "shards", "--where", where); code != exitUsage {
				t.Errorf("--where %q: exit %d, want 2 (%s)", where, code, errOut)
			}
		}
		f.exec(`CREATE SEQUENCE replay_probe`)
		if code, _, errOut := f.cli("replay", "--table", "shards", "--where", "nextval('replay_probe') > 0"); code != exitUsage || !strings.Contains(errOut, "function nextval is not allowed") {
			t.Errorf("a writing predicate was not refused: exit %d %s", code, errOut)
		}
		if called := f.query(`SELECT is_called FROM replay_probe`)[0][0]; called != "f" {
			t.Errorf("the writing predicate ran: the sequence advanced")
		}
		if n := f.query(`SELECT count(*) FROM users`)[0][0]; n != "2" {
			t.Errorf("users has %s rows after injection attempts", n)
		}
	})
	t.Run("tenant", func(t *testing.T) {
		f.set("tenant:t1:shard:9:structured", "tenant:t1:user:99:profile", "tenant:t1:acl:1:2", "tenant:t2:user:20:profile", "session:abc")
		code, out, errOut := f.cli("replay", "--tenant", "t1")
		if code != 0 {
			t.Fatalf("exit %d\n%s%s", code, out, errOut)
		}
		for k, want := range map[string]bool{"tenant:t1:shard:9:structured": false, "tenant:t1:user:99:profile": false,
			"tenant:t1:acl:1:2": false, "tenant:t2:user:20:profile": true, "session:abc": true} {
			if f.exists(k) != want {
				t.Errorf("after replay --tenant t1: %s exists = %v, want %v", k, !want, want)
			}
		}
		if code, _, _ := f.cli("replay", "--tenant", "t1", "--tenant-column", "nope"); code != exitUsage {
			t.Errorf("an unknown tenant column: exit %d, want 2", code)
		}
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{"replay"}, {"replay", "--since", "1h", "--tenant", "x"}, {"replay", "--from-lsn", "zz"}, {"replay", "--table", "nosuch"}} {
			if code, _, _ := f.cli(args...); code != exitUsage {
				t.Errorf("%v: exit %d, want 2", args, code)
			}
		}
	})
}

// TestReplay_FailedReadPrintsNoSummary: with Redis down, replay fails
// without a summary that would read as "there was nothing to do".
func TestReplay_FailedReadPrintsNoSummary(t *testing.T) {
	f := newDatabaseFixture(t, rulesYAML)
	port, err := testsrv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	f.env = append(f.env, fmt.Sprintf("INVALIDATOR_REDIS_URL=redis://127.0.0.1:%d", port))
	for _, args := range [][]string{{"replay", "--since", "5m", "--dry-run"}, {"replay", "--since", "5m"}} {
		code, out, errOut := f.cli(args...)
		if code != exitProblems || out != "" || !strings.Contains(errOut, "Redis") {
			t.Errorf("%v with Redis down: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
}

// TestReplay_WhereAttacks: each way out of a --where predicate seen so far
// is refused (exit 2, nothing read or changed), and what the checker lets
// through still runs bounded and, with --role, with that role's rights.
func TestReplay_WhereAttacks(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO shards VALUES ('t1', 1, 'p', 'a'), ('t2', 1, 'p', 'b')`)
	probe := f.db + "_probe"
	f.exec(fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, probe))
	t.Cleanup(func() {
		f.exec(fmt.Sprintf(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '%s'`, probe))
	})
	slotExists := func() bool {
		return f.query(fmt.Sprintf(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = '%s'`, probe))[0][0] == "1"
	}
	for _, c := range []struct{ where, want string }{
		{`tenant_id = E'\'' ) UNION ALL SELECT rolname, 1, rolname, rolname FROM pg_authid WHERE ( E'\'' <> 'x'`, "unbalanced parentheses"},
		{`tenant_id = E'\'' OR true OR E'\'' <> 'x' UNION ALL SELECT rolname, 1, rolname, rolname FROM pg_authid`, "union is neither a column"},
		{`pg_drop_replication_slot('` + probe + `') IS NULL`, "function pg_drop_replication_slot is not allowed"},
		{`pg_sleep(100) IS NOT NULL`, "function pg_sleep is not allowed"},
		{`tenant_id IN (SELECT rolname FROM pg_authid)`, "select is neither a column"},
		{`tenant_id = pg_catalog.current_user`, `"." is not allowed`},
		{`tenant_id = U&'\0027'`, "Unicode-escaped"},
		{`id = 1union select 1`, "a number must be followed"},
		{`id = 1e'\'' ) UNION ALL SELECT rolname, 1, rolname, rolname FROM pg_authid WHERE ( '' = '`, "an exponent needs digits"},
		{`"pg_sleep"(1) IS NULL`, `function "pg_sleep" is not allowed`},
	} {
		code, out, errOut := f.cli("replay", "--table", "shards", "--where", c.where, "--dry-run")
		if code != exitUsage || !strings.Contains(errOut, c.want) || out != "" {
			t.Errorf("--where %s: exit %d, want 2 with %q\nstdout: %s\nstderr: %s", c.where, code, c.want, out, errOut)
		}
	}
	if !slotExists() {
		t.Fatal("a --where predicate dropped a replication slot")
	}

	// the structured form binds its value: a quote in it is just a quote
	f.set("tenant:t1:shard:1:structured", "tenant:t2:shard:1:structured")
	code, out, errOut := f.cli("replay", "--table", "shards", "--where-column", "tenant_id", "--where-value", "t1' OR 'a' = 'a")
	if code != 0 || !strings.Contains(out, "replayed 0 rows") || !f.exists("tenant:t1:shard:1:structured") {
		t.Errorf("--where-value with a quote: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = f.cli("replay", "--table", "shards", "--where-column", "tenant_id", "--where-value", "t1", "--where", "id = 1")
	if code != 0 || !strings.Contains(out, "replayed 1 rows") || f.exists("tenant:t1:shard:1:structured") || !f.exists("tenant:t2:shard:1:structured") {
		t.Errorf("--where-column tenant_id --where-value t1: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := f.cli("replay", "--table", "shards", "--where-column", "nope", "--where-value", "x"); code != exitUsage || !strings.Contains(errOut, "not a column") {
		t.Errorf("--where-column nope: exit %d %s", code, errOut)
	}

	// behind the checker: the statement timeout bounds a slow predicate,
	// and a read-only role cannot drop a slot
	f.exec(`CREATE ROLE ` + f.db + `_reader NOLOGIN; GRANT SELECT ON shards TO ` + f.db + `_reader`)
	t.Cleanup(func() { f.exec(`DROP OWNED BY ` + f.db + `_reader; DROP ROLE ` + f.db + `_reader`) })
	r := testReplayer(t, f)
	ctx := context.Background()
	err := r.scanUnchecked(ctx, "public.shards", "pg_sleep(100) IS NOT NULL", replayFlags{batch: 10, stmtTimeout: 200 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "statement timeout") {
		t.Errorf("pg_sleep(100) behind the checker: %v, want a statement timeout", err)
	}
	err = r.scanUnchecked(ctx, "public.shards", "pg_drop_replication_slot('"+probe+"') IS NULL", replayFlags{batch: 10, stmtTimeout: time.Minute, role: f.db + "_reader"})
	if err == nil || !strings.Contains(err.Error(), "SQLSTATE 42501") || !slotExists() { // insufficient_privilege
		t.Errorf("pg_drop_replication_slot as a read-only role: %v (slot exists: %v)", err, slotExists())
	}
}

// testReplayer is a dry-run replayer on f's database and Redis.
func testReplayer(t *testing.T, f *fixture) *replayer {
	t.Helper()
	rules, err := router.LoadRules(f.rules)
	if err != nil {
		t.Fatal(err)
	}
	return &replayer{
		cfg: &config.Config{PostgresURL: f.pgURL}, rules: rules, rt: router.New(rules, 0, nil), rdb: f.rdb,
		dryRun: true, out: io.Discard, progress: newProgress(io.Discard),
	}
}

// scanUnchecked runs a table read with where as given, past the checker.
func (r *replayer) scanUnchecked(ctx context.Context, table, where string, f replayFlags) error {
	conn, err := pgconn.Connect(ctx, r.cfg.PostgresURL)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	cols, err := cdc.TableColumns(ctx, conn, table)
	if err != nil {
		return err
	}
	return r.scan(ctx, conn, table, nil, cols, where, nil, f)
}

// TestExplain_BadRowExits2: the command itself ends a bad row with exit 2
// and the reason, printing nothing on stdout.
func TestExplain_BadRowExits2(t *testing.T) {
	clearEnv(t)
	for _, row := range []string{`null`, `{"tenant_id":"t1","id":1} xx`, `{"tenant_id":"t1","id":1.0e2}`} {
		code, out, errOut := runMain(t, "explain", "--rules", "../../demo/rules.yaml", "--table", "shards", "--row", row)
		if code != exitUsage || out != "" || !strings.Contains(errOut, "invalidator explain: --row: ") {
			t.Errorf("explain --row %s: exit %d, stdout %q, stderr %q", row, code, out, errOut)
		}
	}
}
