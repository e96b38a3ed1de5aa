package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// TestVersions_CoreGuarantees runs the core guarantees on every supported
// PostgreSQL major other than 15 (the rest of the suite covers 15): one
// server and one daemon per version, then in turn a row change, an update
// that moves a row (old and new image), TRUNCATE, a streamed commit, a
// streamed abort, kill -9 of the daemon and a PostgreSQL crash and
// restart. A version that is not installed skips (fails under CI=true).
func TestVersions_CoreGuarantees(t *testing.T) {
	needIntegration(t)
	for _, v := range testsrv.PostgresVersions {
		if v == testsrv.DefaultPostgresVersion {
			continue
		}
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) {
			pg := testsrv.StartPostgresWith(t, testsrv.PostgresOptions{Version: v})
			f := newFixtureOn(t, pg)
			if v < 17 {
				for _, cmd := range []string{"check", "run"} {
					code, out := f.runWith([]string{"INVALIDATOR_SLOT_FAILOVER=true"}, cmd)
					if code != exitUsage || !strings.Contains(out, "INVALIDATOR_SLOT_FAILOVER=true needs PostgreSQL 17") {
						t.Errorf("%s with INVALIDATOR_SLOT_FAILOVER=true on %d: exit %d, want 2 saying it needs 17:\n%s", cmd, v, code, out)
					}
				}
			}
			f.exec(`INSERT INTO shards VALUES ('t1', 5, 'p', 'a')`)
			d := f.startReady()
			steps := []struct {
				name string
				keep []string // keys that must survive
				gone []string // keys that must be deleted
				act  func()
			}{
				{name: "insert", keep: []string{"tenant:v:user:2:profile"}, gone: []string{"tenant:v:user:1:profile"},
					act: func() { f.exec(`INSERT INTO users VALUES ('v', 1, 'ann')`) }},
				{name: "update moves the row", keep: []string{"tenant:t3:shard:5:structured"},
					gone: []string{"tenant:t1:shard:5:structured", "tenant:t2:shard:5:structured"},
					act: func() {
						f.exec(`UPDATE shards SET tenant_id = 't2', payload = 'moved' WHERE tenant_id = 't1' AND id = 5`)
					}},
				{name: "truncate", keep: []string{"tenant:v:user:9:profile"},
					gone: []string{"tenant:t9:shard:1:structured", "tenant:t1:vsearch:x"},
					act:  func() { f.exec(`TRUNCATE shards`) }},
				{name: "streamed commit", gone: []string{"tenant:s:user:10001:profile", "tenant:s:user:13999:profile"},
					act: func() {
						f.exec(`INSERT INTO users SELECT 's', g, repeat('x', 200) FROM generate_series(10001, 14000) g`)
					}},
				{name: "streamed abort", keep: []string{"tenant:big:user:20001:profile", "tenant:big:user:24999:profile"},
					act: func() {
						f.exec(`BEGIN; INSERT INTO users SELECT 'big', g, repeat('x', 100) FROM generate_series(20001, 25000) g; ROLLBACK`)
					}},
				{name: "kill -9 of the daemon", gone: []string{"tenant:k:user:30001:profile"},
					act: func() {
						d.kill(t)
						f.exec(`INSERT INTO users VALUES ('k', 30001, 'while down')`)
						d = f.startReady()
					}},
				{name: "postgres crash and restart", gone: []string{"tenant:r:user:30002:profile", "tenant:r:user:30003:profile"},
					act: func() {
						f.exec(`INSERT INTO users VALUES ('r', 30002, 'before')`)
						pg.Kill(t)
						pg.Start(t)
						f.exec(`INSERT INTO users VALUES ('r', 30003, 'after')`)
					}},
			}
			for _, st := range steps {
				f.set(append(append([]string{}, st.keep...), st.gone...)...)
				st.act()
				f.sync()
				for _, k := range st.gone {
					if f.exists(k) {
						t.Errorf("%s: key %s was not deleted", st.name, k)
					}
				}
				for _, k := range st.keep {
					if !f.exists(k) {
						t.Errorf("%s: key %s was deleted", st.name, k)
					}
				}
			}
			for ch, want := range map[string]int{
				"cache:invalidate:user:v:1": 1, "cache:invalidate:shard:t1:5": 1, "cache:invalidate:shard:t2:5": 1,
				"cache:invalidate:shard:*:*": 1, "cache:invalidate:user:k:30001": 1, "cache:invalidate:user:r:30003": 1,
			} {
				if n := len(f.sub.on(ch)); n != want {
					t.Errorf("%d messages on %s, want %d", n, ch, want)
				}
			}
			if n := len(f.sub.on("cache:invalidate:user:r:30002")); n < 1 {
				t.Error("no message for the row committed just before the crash")
			}
			for _, m := range f.sub.all() {
				if strings.Contains(m.Channel, ":big:") {
					t.Errorf("aborted transaction published %s", m.Channel)
				}
			}
			if d.exited() {
				t.Fatalf("the daemon exited:\n%s", d.out.String())
			}
		})
	}
}

// TestVersions_RefusesOldServer checks that run and check refuse
// PostgreSQL 13 with exit status 2 and say why.
func TestVersions_RefusesOldServer(t *testing.T) {
	needIntegration(t)
	pg := testsrv.StartPostgresWith(t, testsrv.PostgresOptions{Version: 13})
	f := newFixtureOn(t, pg)
	for _, cmd := range []string{"check", "run"} {
		code, out := f.runWith(nil, cmd)
		if code != exitUsage || !strings.Contains(out, "PostgreSQL 13.") || !strings.Contains(out, "invalidator needs PostgreSQL 14 or later") {
			t.Errorf("%s on PostgreSQL 13: exit %d, want 2 saying it needs 14:\n%s", cmd, code, out)
		}
	}
}

// runWith runs the daemon binary with the fixture's environment plus env
// until it exits, and returns its status and output.
func (f *fixture) runWith(env []string, args ...string) (int, string) {
	f.t.Helper()
	saved := f.env
	f.env = append(append([]string{}, f.env...), env...)
	d := f.start(args...)
	f.env = saved
	code := d.wait(f.t, 60*time.Second)
	return code, d.out.String()
}
