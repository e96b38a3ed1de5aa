package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// preflightRules has one rule on each table the cases below break.
const preflightRules = `version: 1
key_prefix: ""
channel_prefix: "cache:invalidate:"
rules:
  - name: user-profile
    table: users
    keys: ["tenant:{tenant_id}:user:{id}:profile"]
`

// runToExit runs `invalidator run` and waits for it to exit on its own,
// failing the test if it is still running after a deadline (a permanent
// error retried forever).
func (f *fixture) runToExit(args ...string) (code int, stderr string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append([]string{"run"}, args...)...)
	cmd.Env = append(os.Environ(), f.env...)
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	_ = cmd.Run()
	if ctx.Err() != nil {
		f.t.Fatalf("run did not exit within 30s (retrying a permanent error?):\n%s", errOut.String())
	}
	return cmd.ProcessState.ExitCode(), errOut.String()
}

// checkReport runs `invalidator check --json` and decodes its report.
func (f *fixture) checkReport() (int, checkJSON) {
	f.t.Helper()
	code, out, errOut := f.cli("check", "--json")
	var rep checkJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		f.t.Fatalf("check --json: %v\n%s\n%s", err, out, errOut)
	}
	return code, rep
}

// stderrLines are the lines of stderr that are not the JSON log.
func stderrLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.HasPrefix(l, "{") {
			out = append(out, l)
		}
	}
	return out
}

// TestRefusesWhatCannotBeStreamed: a database run cannot stream as the
// rules need without leaving keys stale or breaking the application's
// writes makes run exit 2 with the fix on stderr before it touches the
// publication, setup likewise, and check calls it a problem.
func TestRefusesWhatCannotBeStreamed(t *testing.T) {
	needIntegration(t)
	rdb := testsrv.StartRedis(t)
	logsRules := strings.Replace(preflightRules, "table: users\n    keys: [\"tenant:{tenant_id}:user:{id}:profile\"]", "table: logs\n    keys: [\"log:{id}\"]", 1)
	cases := []struct {
		name, rules, sql string
		other            bool   // the slot belongs to another database
		want             string // in run's stderr, setup's stderr and check's finding
		fix              string // in the same places
		noPublication    bool   // the publication must not exist afterwards
	}{
		{name: "partial publish", rules: preflightRules, sql: `CREATE PUBLICATION %[1]s FOR TABLE users WITH (publish = 'insert, update')`,
			want: "does not publish delete (rules user-profile), truncate", fix: "SET (publish = 'insert, update, delete, truncate')"},
		{name: "all tables, inserts only", rules: preflightRules, sql: `CREATE PUBLICATION %[1]s FOR ALL TABLES WITH (publish = 'insert')`,
			want: "does not publish update (rules user-profile), delete", fix: "SET (publish = 'insert, update, delete, truncate')"},
		{name: "schema, no truncate", rules: preflightRules, sql: `CREATE PUBLICATION %[1]s FOR TABLES IN SCHEMA public WITH (publish = 'insert, update, delete')`,
			want: "does not publish truncate (rules user-profile)", fix: "SET (publish = 'insert, update, delete, truncate')"},
		{name: "row filter", rules: preflightRules, sql: `CREATE PUBLICATION %[1]s FOR TABLE users WHERE (id < 5)`,
			want: "sends only the rows of public.users WHERE (id < 5)", fix: `DROP TABLE "public"."users"`},
		{name: "column list", rules: preflightRules, sql: `CREATE PUBLICATION %[1]s FOR TABLE users (id, name)`,
			want: "column list for public.users that omits tenant_id", fix: `ADD TABLE "public"."users"`},
		{name: "no primary key", rules: logsRules, sql: `CREATE TABLE logs(id int, msg text); INSERT INTO logs VALUES (1, 'a')`,
			want: "REPLICA IDENTITY DEFAULT without a primary key", fix: `ALTER TABLE "public"."logs" REPLICA IDENTITY FULL;`, noPublication: true},
		{name: "replica identity nothing", rules: preflightRules, sql: `ALTER TABLE users REPLICA IDENTITY NOTHING`,
			want: "REPLICA IDENTITY NOTHING", fix: `ALTER TABLE "public"."users" REPLICA IDENTITY FULL;`, noPublication: true},
		{name: "view", rules: logsRules, sql: `CREATE VIEW logs AS SELECT id FROM users`,
			want: "is a view", fix: "point the rule at the table(s) it reads", noPublication: true},
		{name: "materialized view", rules: logsRules, sql: `CREATE MATERIALIZED VIEW logs AS SELECT id FROM users`,
			want: "is a materialized view", fix: "point the rule at the table(s) it reads", noPublication: true},
		{name: "unlogged table", rules: logsRules, sql: `CREATE UNLOGGED TABLE logs(id int PRIMARY KEY)`,
			want: "is UNLOGGED", fix: `ALTER TABLE "public"."logs" SET LOGGED;`, noPublication: true},
		{name: "slot of another database", rules: preflightRules, other: true,
			want: "belongs to database", fix: "choose another INVALIDATOR_SLOT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newDatabaseFixture(t, tc.rules)
			f.env = append(f.env, "INVALIDATOR_REDIS_URL="+rdb.URL())
			if tc.sql != "" {
				f.exec(strings.ReplaceAll(tc.sql, "%[1]s", f.db))
			}
			if tc.other {
				g := newDatabaseFixture(t, tc.rules)
				g.exec(fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'pgoutput')`, g.db))
				f.env = append(f.env, "INVALIDATOR_SLOT="+g.db)
			}
			pubBefore := f.query(fmt.Sprintf(`SELECT p.pubinsert, p.pubupdate, p.pubdelete, (SELECT count(*) FROM pg_publication_tables t WHERE t.pubname = p.pubname) FROM pg_publication p WHERE pubname = '%s'`, f.db))

			code, stderr := f.runToExit()
			if code != exitUsage || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, tc.fix) {
				t.Fatalf("run: exit %d, want 2 with %q and %q on stderr:\n%s", code, tc.want, tc.fix, strings.Join(stderrLines(stderr), "\n"))
			}
			code, _, stderr = f.cli("setup")
			if code != exitUsage || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, tc.fix) {
				t.Fatalf("setup: exit %d, want 2 with %q and %q:\n%s", code, tc.want, tc.fix, stderr)
			}
			pubAfter := f.query(fmt.Sprintf(`SELECT p.pubinsert, p.pubupdate, p.pubdelete, (SELECT count(*) FROM pg_publication_tables t WHERE t.pubname = p.pubname) FROM pg_publication p WHERE pubname = '%s'`, f.db))
			if fmt.Sprint(pubAfter) != fmt.Sprint(pubBefore) || tc.noPublication && len(pubAfter) != 0 {
				t.Fatalf("the publication changed: before %v, after %v", pubBefore, pubAfter)
			}
			if tc.name == "no primary key" {
				f.exec(`UPDATE logs SET msg = 'b' WHERE id = 1; DELETE FROM logs WHERE id = 1`) // the application's writes still work
			}
			code, rep := f.checkReport()
			if code != exitProblems || !rep.findAny("problem", tc.want) || !rep.findAny("problem", tc.fix) {
				t.Fatalf("check: exit %d, want 1 with a problem %q / %q: %+v", code, tc.want, tc.fix, rep.Checks)
			}
		})
	}
}

// findAny reports whether some finding of the status mentions s.
func (c checkJSON) findAny(status, s string) bool {
	for _, f := range c.Checks {
		if f.Status == status && strings.Contains(f.Check+" "+f.Message+" "+f.Fix, s) {
			return true
		}
	}
	return false
}

// TestGeneratedColumnInTemplate: pgoutput does not send a generated
// column, so check calls a template that renders one a problem with the
// fix, and run starts but warns.
func TestGeneratedColumnInTemplate(t *testing.T) {
	f := newDatabaseFixture(t, strings.Replace(preflightRules, "{tenant_id}:user:{id}", "{slug}", 1)+`
  - name: sentinel
    table: sentinel
    channel: "sentinel:{id}"
`)
	rdb := testsrv.StartRedis(t)
	f.env = append(f.env, "INVALIDATOR_REDIS_URL="+rdb.URL())
	f.exec(`ALTER TABLE users ADD COLUMN slug text GENERATED ALWAYS AS (tenant_id || '-' || id) STORED`)
	code, rep := f.checkReport()
	if code != exitProblems || !rep.findAny("problem", `renders generated column slug`) || !rep.findAny("problem", "render the key from the columns") {
		t.Fatalf("check: exit %d, want a generated-column problem: %+v", code, rep.Checks)
	}
	d := f.start()
	d.waitReady(t)
	if out := d.out.String(); !strings.Contains(out, `"level":"warn"`) || !strings.Contains(out, "renders generated column slug") {
		t.Fatalf("run did not warn of the generated column:\n%s", out)
	}
	// no key stays stale: the row is flushed by a pattern
	f.rdb = rdb.Client(t)
	f.sub = newSubscriber(t, f.rdb, "cache:invalidate:*")
	f.exec(`INSERT INTO users VALUES ('t1', 1, 'a')`)
	f.sync()
	f.set("tenant:t1-1:profile")
	f.exec(`UPDATE users SET name = 'b' WHERE id = 1`)
	f.sync()
	if f.exists("tenant:t1-1:profile") {
		t.Fatal("the key rendered from the generated column stayed")
	}
	if n := d.metric(t, "invalidator_render_failures_total", `rule="user-profile"`); n == 0 {
		t.Fatal("render_failures_total{rule=\"user-profile\"} did not count the unknown column")
	}
}

// TestPermanentErrorsEndRun: credentials or settings that retrying cannot
// mend end run with exit 2 and one line on stderr that says what is wrong
// (ADR 17), instead of being retried forever.
func TestPermanentErrorsEndRun(t *testing.T) {
	needIntegration(t)
	plain := testsrv.StartRedis(t)
	locked, err := testsrv.NewRedisWith(testsrv.RedisOptions{Args: []string{"--requirepass", "secret"}, Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = locked.Close() })
	scram, err := testsrv.NewPostgresWith(testsrv.PostgresOptions{HBA: []string{"host all all 127.0.0.1/32 scram-sha-256"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = scram.Close() })
	withPassword := func(u, pw string) string { return strings.Replace(u, "://", "://:"+pw+"@", 1) }

	cases := []struct {
		name string
		env  func(f *fixture) []string
		want string
	}{
		{"postgres wrong password", func(*fixture) []string {
			return []string{"INVALIDATOR_POSTGRES_URL=" + strings.Replace(scram.URL("postgres"), "postgres@", "postgres:wrong@", 1)}
		}, "password authentication failed"},
		{"postgres no such role", func(f *fixture) []string {
			return []string{"INVALIDATOR_POSTGRES_URL=" + strings.Replace(f.pgURL, "postgres@", "nosuchrole@", 1)}
		}, `role "nosuchrole" does not exist`},
		{"postgres no such database", func(f *fixture) []string {
			return []string{"INVALIDATOR_POSTGRES_URL=" + strings.Replace(f.pgURL, "/"+f.db, "/nosuchdb", 1)}
		}, `database "nosuchdb" does not exist`},
		{"redis wrong password", func(*fixture) []string {
			return []string{"INVALIDATOR_REDIS_URL=" + withPassword(locked.URL(), "wrong")}
		}, "WRONGPASS"},
		{"redis password missing", func(*fixture) []string { return []string{"INVALIDATOR_REDIS_URL=" + locked.URL()} }, "NOAUTH"},
		{"redis without requirepass", func(*fixture) []string {
			return []string{"INVALIDATOR_REDIS_URL=" + withPassword(plain.URL(), "secret")}
		}, "without any password configured"},
		{"redis db 99", func(*fixture) []string {
			return []string{"INVALIDATOR_REDIS_URL=" + strings.TrimSuffix(plain.URL(), "/0") + "/99"}
		}, "DB index is out of range"},
		{"redis url bad db index", func(*fixture) []string {
			return []string{"INVALIDATOR_REDIS_URL=" + strings.TrimSuffix(plain.URL(), "/0") + "/abc"}
		}, "INVALIDATOR_REDIS_URL"},
		{"missing CA file", func(*fixture) []string {
			return []string{"INVALIDATOR_REDIS_URL=rediss://" + plain.Addr() + "/0", "INVALIDATOR_REDIS_TLS_CA_FILE=/nonexistent/ca.pem"}
		}, "INVALIDATOR_REDIS_TLS_CA_FILE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newDatabaseFixture(t, preflightRules)
			f.env = append(append(f.env, "INVALIDATOR_REDIS_URL="+plain.URL()), tc.env(f)...)
			code, stderr := f.runToExit()
			lines := stderrLines(stderr)
			if code != exitUsage || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("run: exit %d, want 2 and one line with %q on stderr; stderr:\n%s", code, tc.want, stderr)
			}
			if strings.Contains(lines[0], "wrong") || strings.Contains(lines[0], "secret") {
				t.Fatalf("the line shows a password: %s", lines[0])
			}
			if strings.HasPrefix(tc.name, "redis ") {
				if code, rep := f.checkReport(); code != exitProblems || !rep.findAny("problem", tc.want) {
					t.Fatalf("check: exit %d, want a redis problem with %q: %+v", code, tc.want, rep.Checks)
				}
			}
		})
	}
}
