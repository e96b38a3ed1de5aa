package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// clearEnv unsets every INVALIDATOR_* variable for the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "INVALIDATOR_") {
			t.Setenv(k, "")
			_ = os.Unsetenv(k)
		}
	}
}

func TestMain_Usage(t *testing.T) {
	clearEnv(t)
	tests := []struct {
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{nil, exitOK, "Commands:", ""},
		{[]string{"--help"}, exitOK, "Commands:", ""},
		{[]string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{[]string{"version"}, exitOK, "invalidator", ""},
		{[]string{"run", "--help"}, exitOK, "-postgres-url", ""},
		{[]string{"run", "--no-such-flag"}, exitUsage, "", "flag provided but not defined"},
		{[]string{"run"}, exitUsage, "", "INVALIDATOR_POSTGRES_URL: required"},
		{[]string{"run", "--postgres-url", "postgres://x@h/db"}, exitUsage, "", "INVALIDATOR_REDIS_URL: required"},
		{[]string{"run", "--postgres-url", "mysql://x@h/db", "--redis-url", "redis://h"}, exitUsage, "", "INVALIDATOR_POSTGRES_URL: must be a postgres:// URL"},
		{[]string{"run", "--postgres-url", "postgres://x@h/db", "--redis-url", "redis://h", "--slot", "Bad-Slot"}, exitUsage, "", "INVALIDATOR_SLOT"},
		{[]string{"run", "--postgres-url", "postgres://x@h/db", "--redis-url", "redis://h", "--rules", "/nonexistent/rules.yaml"}, exitUsage, "", "/nonexistent/rules.yaml: cannot read rules file: no such file or directory (INVALIDATOR_RULES or --rules names the rules file)"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runMain(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit status %d, want %d (stderr %q)", code, tt.code, stderr)
			}
			if !strings.Contains(stdout, tt.inStdout) {
				t.Errorf("stdout %q does not contain %q", stdout, tt.inStdout)
			}
			if !strings.Contains(stderr, tt.inStderr) {
				t.Errorf("stderr %q does not contain %q", stderr, tt.inStderr)
			}
		})
	}
}

func TestMain_BadEnvironment(t *testing.T) {
	clearEnv(t)
	t.Setenv("INVALIDATOR_HEARTBEAT_INTERVAL", "often")
	code, _, stderr := runMain(t, "run")
	if code != exitUsage || !strings.Contains(stderr, "INVALIDATOR_HEARTBEAT_INTERVAL") {
		t.Errorf("exit %d, stderr %q: want 2 naming INVALIDATOR_HEARTBEAT_INTERVAL", code, stderr)
	}
}

func TestMain_BadRulesFile(t *testing.T) {
	clearEnv(t)
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("version: 1\nrules:\n  - name: a\n    table: t\n    keys: [\"x:{id\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runMain(t, "run", "--postgres-url", "postgres://x@h/db", "--redis-url", "redis://h", "--rules", rules)
	if code != exitUsage || !strings.Contains(stderr, rules+":5:") || !strings.Contains(stderr, `rule "a"`) {
		t.Errorf("exit %d, stderr %q: want 2 with %s:5: and the rule's name", code, stderr, rules)
	}
}

// TestRun_MissingColumn checks that a template naming a column the table
// lacks stops the daemon at start with the rule's name (exit status 2).
func TestRun_MissingColumn(t *testing.T) {
	f := newFixture(t)
	if err := os.WriteFile(f.rules, []byte(`version: 1
rules:
  - name: user-email
    table: users
    keys: ["user:{email}"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	d := f.start()
	code := d.wait(t, waitLong)
	if out := d.out.String(); code != exitUsage || !strings.Contains(out, `rule "user-email"`) || !strings.Contains(out, `"email"`) {
		t.Errorf("exit %d, want 2 naming the rule and column; output:\n%s", code, out)
	}
}

// Every command's --help prints its help once, on stdout, and nothing on
// stderr; a bad flag prints one error and a pointer to --help on stderr.
func TestMain_HelpOnce(t *testing.T) {
	clearEnv(t)
	for _, name := range []string{"run", "check", "setup", "status", "replay", "explain", "version"} {
		t.Run(name, func(t *testing.T) {
			for _, arg := range []string{"--help", "-h"} {
				code, stdout, stderr := runMain(t, name, arg)
				if code != exitOK || stderr != "" {
					t.Errorf("%s %s: exit %d, stderr %q; want 0 and nothing", name, arg, code, stderr)
				}
				if n := strings.Count(stdout, "Flags:"); n != 1 {
					t.Errorf("%s %s: help printed %d times on stdout:\n%s", name, arg, n, stdout)
				}
			}
			code, stdout, stderr := runMain(t, name, "--no-such-flag")
			if code != exitUsage || stdout != "" || strings.Contains(stderr, "Flags:") ||
				!strings.Contains(stderr, "flag provided but not defined: -no-such-flag") ||
				!strings.Contains(stderr, "invalidator "+name+" --help") {
				t.Errorf("%s --no-such-flag: exit %d, stdout %q, stderr %q; want 2, the error and a pointer to --help", name, code, stdout, stderr)
			}
		})
	}
}

// `make build` stamps the commit in, so `version` names it even where the
// Go install turns VCS stamping off (GOFLAGS=-buildvcs=false).
func TestVersion_MakeBuildStampsCommit(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse: %v (the test runs in the repository's work tree)", err)
	}
	bin := filepath.Join(t.TempDir(), "invalidator")
	build := exec.Command("make", "-s", "-C", "../..", "build", "BIN="+bin, "GO="+goTool())
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("invalidator version: %v", err)
	}
	if want := "invalidator (devel) " + strings.TrimSpace(string(head)); !strings.HasPrefix(string(out), want) {
		t.Errorf("version printed %q, want it to start with %q", out, want)
	}
}

// The stamped commit is printed when the build has no VCS information.
func TestVersion_Stamped(t *testing.T) {
	old := buildCommit
	t.Cleanup(func() { buildCommit = old })
	buildCommit = "0123456789ab"
	code, stdout, _ := runMain(t, "version")
	if code != exitOK || !strings.HasPrefix(stdout, "invalidator ") || !strings.Contains(stdout, " 0123456789ab ") {
		t.Errorf("exit %d, stdout %q: want the stamped commit", code, stdout)
	}
}
