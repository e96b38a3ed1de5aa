package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
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
