package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// cli runs the binary once with the fixture's environment.
func (f *fixture) cli(args ...string) (code int, stdout, stderr string) {
	f.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), f.env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		f.t.Fatalf("run %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

type checkJSON struct {
	OK       bool      `json:"ok"`
	Problems int       `json:"problems"`
	Warnings int       `json:"warnings"`
	Checks   []finding `json:"checks"`
}

func (c checkJSON) find(check, status, contains string) bool {
	for _, f := range c.Checks {
		if f.Check == check && f.Status == status && strings.Contains(f.Message+" "+f.Fix, contains) {
			return true
		}
	}
	return false
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	t.Run("before setup, run may create", func(t *testing.T) {
		code, out, errOut := f.cli("check", "--json")
		var c checkJSON
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatalf("check --json: %v\n%s%s", err, out, errOut)
		}
		if code != 0 || !c.OK {
			t.Errorf("exit %d ok %v, want 0 (only warnings): %s", code, c.OK, out)
		}
		for _, want := range []struct{ check, status, contains string }{
			{"postgres", "ok", "wal_level=logical"},
			{"publication", "warn", "run will create it"},
			{"slot", "warn", "run will create it"},
			{"table public.users", "warn", `ALTER TABLE "public"."users" REPLICA IDENTITY FULL`},
			{"table public.shards", "ok", "REPLICA IDENTITY FULL"},
			{"redis", "ok", "reachable"},
		} {
			if !c.find(want.check, want.status, want.contains) {
				t.Errorf("no %s %s finding containing %q in %s", want.status, want.check, want.contains, out)
			}
		}
	})
	t.Run("problems exit 1", func(t *testing.T) {
		f.env = append(f.env, "INVALIDATOR_CREATE_SLOT=false")
		code, out, _ := f.cli("check")
		if code != exitProblems || !strings.Contains(out, "problem") || !strings.Contains(out, "invalidator setup") {
			t.Errorf("exit %d, want 1 with problems and the fix:\n%s", code, out)
		}
	})
	t.Run("bad configuration exits 2", func(t *testing.T) {
		f.env = append(f.env, "INVALIDATOR_LOG_LEVEL=loud")
		code, _, errOut := f.cli("check")
		if code != exitUsage || !strings.Contains(errOut, "INVALIDATOR_LOG_LEVEL") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
	})
}

func TestSetupAndStatus(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_CREATE_SLOT=false")
	code, out, errOut := f.cli("setup")
	if code != 0 || !strings.Contains(out, "created for public.shards") || !strings.Contains(out, "slot \""+f.db+"\": created") ||
		!strings.Contains(out, "REPLICATION") || !strings.Contains(out, "GRANT SELECT ON") {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = f.cli("setup")
	if code != 0 || !strings.Contains(out, "covers every rule table") || !strings.Contains(out, ": exists") {
		t.Errorf("second setup: exit %d\n%s", code, out)
	}
	if code, out, _ := f.cli("check"); code != 0 {
		t.Errorf("check after setup: exit %d\n%s", code, out)
	}

	f.startReady()
	f.exec(`INSERT INTO users VALUES ('t1', 1, 'a')`)
	f.sync()
	code, out, errOut = f.cli("status", "--json")
	var st statusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("status --json: exit %d %v\n%s%s", code, err, out, errOut)
	}
	if !st.Exists || !st.Active || st.ActivePID == 0 || !lsnFormat.MatchString(st.ConfirmedLSN) {
		t.Errorf("status slot: %+v", st)
	}
	if st.Journal.Entries < 2 || !lsnFormat.MatchString(st.Journal.FirstLSN) || st.Journal.LastCommit == "" {
		t.Errorf("status journal: %+v", st.Journal)
	}
	code, out, _ = f.cli("status")
	if code != 0 || !strings.Contains(out, "active (pid") || !strings.Contains(out, "entries") {
		t.Errorf("status: exit %d\n%s", code, out)
	}
}

// With a server down, the one-shot commands say in one line what failed
// and what to check; go-redis's own pool lines ("redis: … pool.go: …
// failed to dial") never reach stderr.
func TestOneShot_ServerDown(t *testing.T) {
	f := newDatabaseFixture(t, rulesYAML)
	port, err := testsrv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("127.0.0.1:%d", port)
	f.env = append(f.env, "INVALIDATOR_REDIS_URL=redis://"+closed+"/0")
	// status with the slot missing is a problem of its own: create it
	if code, out, errOut := f.cli("setup"); code != exitOK {
		t.Fatalf("setup: exit %d\n%s%s", code, out, errOut)
	}
	redisHint := "check INVALIDATOR_REDIS_URL (--redis-url) and that Redis is running"
	pgHint := "check INVALIDATOR_POSTGRES_URL (--postgres-url) and that the server accepts connections from here"
	tests := []struct {
		name      string
		env       []string
		args      []string
		code      int
		inStdout  string
		stderrHas string // "" = stderr must be empty; else one line containing it
	}{
		{name: "check, Redis down", args: []string{"check"}, code: exitProblems, inStdout: "fix: " + redisHint},
		{name: "status, Redis down", args: []string{"status"}, code: exitOK, inStdout: "cannot reach Redis: dial tcp " + closed},
		{name: "replay, Redis down", args: []string{"replay", "--since", "5m"}, code: exitProblems, stderrHas: "invalidator replay: cannot reach Redis: dial tcp " + closed},
		{name: "replay dry run, Redis down", args: []string{"replay", "--since", "5m", "--dry-run"}, code: exitProblems, stderrHas: redisHint},
		{name: "status, PostgreSQL down", env: []string{"INVALIDATOR_POSTGRES_URL=postgres://postgres@" + closed + "/postgres"},
			args: []string{"status"}, code: exitProblems, stderrHas: "invalidator status: cannot reach PostgreSQL: failed to connect"},
		{name: "setup, PostgreSQL down", env: []string{"INVALIDATOR_POSTGRES_URL=postgres://postgres@" + closed + "/postgres"},
			args: []string{"setup"}, code: exitProblems, stderrHas: pgHint},
	}
	base := f.env
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.env = append(slices.Clone(base), tt.env...)
			code, stdout, stderr := f.cli(tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout %s\nstderr %s", code, tt.code, stdout, stderr)
			}
			if strings.Contains(stdout+stderr, "pool.go") || strings.Contains(stdout+stderr, "failed to dial after") {
				t.Errorf("go-redis's pool lines reached the output:\nstdout %s\nstderr %s", stdout, stderr)
			}
			if !strings.Contains(stdout, tt.inStdout) {
				t.Errorf("stdout %q does not contain %q", stdout, tt.inStdout)
			}
			if tt.stderrHas == "" && stderr != "" {
				t.Errorf("stderr %q, want nothing", stderr)
			}
			if tt.stderrHas != "" && (strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tt.stderrHas)) {
				t.Errorf("stderr %q, want one line containing %q", stderr, tt.stderrHas)
			}
			if strings.Contains(tt.name, "Redis") && !strings.Contains(stdout+stderr, redisHint) ||
				strings.Contains(tt.name, "PostgreSQL") && !strings.Contains(stderr, pgHint) {
				t.Errorf("output does not say what to check:\nstdout %s\nstderr %s", stdout, stderr)
			}
		})
	}
}

// TestStatus_MissingSlot: a slot that does not exist is a problem: exit 1
// with a line saying so, and the JSON keeps its shape.
func TestStatus_MissingSlot(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_CREATE_SLOT=false")
	code, out, errOut := f.cli("status")
	if code != exitProblems || !strings.Contains(out, "slot "+f.db+": does not exist") ||
		!strings.Contains(errOut, `replication slot "`+f.db+`" does not exist`) {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = f.cli("status", "--json")
	var st statusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != exitProblems || st.Exists || st.Slot != f.db || st.Journal.Key == "" {
		t.Errorf("status --json: exit %d %v %+v\n%s%s", code, err, st, out, errOut)
	}
}
