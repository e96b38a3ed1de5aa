package validate

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const unitName = "invalidator.service"

// unitDirectives parses a unit file into section.Key -> values (in order).
func unitDirectives(t *testing.T, src string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s:%d: not Key=Value: %q", unitName, n, line)
			continue
		}
		out[section+"."+strings.TrimSpace(k)] = append(out[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
	}
	return out
}

func TestSystemdUnitDirectives(t *testing.T) {
	d := unitDirectives(t, readFile(t, filepath.Join(systemdDir, unitName)))
	want := map[string]string{
		"Service.Type":                    "simple",
		"Service.DynamicUser":             "no",
		"Service.User":                    "invalidator",
		"Service.Group":                   "invalidator",
		"Service.EnvironmentFile":         "/etc/invalidator/invalidator.env",
		"Service.ExecStart":               "/usr/local/bin/invalidator run",
		"Service.Restart":                 "always",
		"Service.KillSignal":              "SIGTERM",
		"Service.NoNewPrivileges":         "yes",
		"Service.ProtectSystem":           "strict",
		"Service.ProtectHome":             "yes",
		"Service.PrivateTmp":              "yes",
		"Service.PrivateDevices":          "yes",
		"Service.ProtectKernelTunables":   "yes",
		"Service.ProtectKernelModules":    "yes",
		"Service.ProtectKernelLogs":       "yes",
		"Service.ProtectControlGroups":    "yes",
		"Service.ProtectClock":            "yes",
		"Service.ProtectHostname":         "yes",
		"Service.RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"Service.RestrictNamespaces":      "yes",
		"Service.RestrictRealtime":        "yes",
		"Service.RestrictSUIDSGID":        "yes",
		"Service.LockPersonality":         "yes",
		"Service.MemoryDenyWriteExecute":  "yes",
		"Service.SystemCallArchitectures": "native",
		"Service.CapabilityBoundingSet":   "",
		"Service.ReadOnlyPaths":           "/etc/invalidator",
	}
	for k, v := range want {
		got, ok := d[k]
		if !ok {
			t.Errorf("%s: %s missing (want %q)", unitName, k, v)
			continue
		}
		if got[0] != v {
			t.Errorf("%s: %s=%q, want %q", unitName, k, got[0], v)
		}
	}
	if f := d["Service.SystemCallFilter"]; len(f) == 0 || f[0] != "@system-service" {
		t.Errorf("%s: SystemCallFilter must start with @system-service, got %v", unitName, f)
	}
	for _, k := range []string{"Service.RestartSec", "Service.LimitNOFILE", "Service.TimeoutStopSec", "Install.WantedBy"} {
		if len(d[k]) == 0 || d[k][0] == "" {
			t.Errorf("%s: %s missing", unitName, k)
		}
	}
	if v := d["Service.Type"]; len(v) == 1 && v[0] == "notify" {
		t.Errorf("%s: Type=notify, but the daemon does not call sd_notify", unitName)
	}
	// TimeoutStopSec must exceed the drain bound: two phases of INVALIDATOR_SHUTDOWN_TIMEOUT.
	if ts := d["Service.TimeoutStopSec"]; len(ts) == 1 {
		stop, err := time.ParseDuration(ts[0])
		if err != nil {
			t.Errorf("%s: TimeoutStopSec=%s: write it with a unit, e.g. 30s (%v)", unitName, ts[0], err)
		} else if shutdown := 10 * time.Second; stop <= 2*shutdown {
			t.Errorf("%s: TimeoutStopSec=%s must exceed twice the default INVALIDATOR_SHUTDOWN_TIMEOUT (%s)", unitName, ts[0], shutdown)
		}
	}
}

// TestSystemdAnalyzeVerify runs `systemd-analyze verify` on a copy of the
// unit whose ExecStart points at /bin/true (the real binary is not
// installed here). In CI install it with: apt-get install -y systemd
func TestSystemdAnalyzeVerify(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found: install the Debian package `systemd` (apt-get install -y systemd) to verify the unit")
	}
	src := readFile(t, filepath.Join(systemdDir, unitName))
	re := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/invalidator(\s.*)?$`)
	if !re.MatchString(src) {
		t.Fatalf("%s: no ExecStart=/usr/local/bin/invalidator line", unitName)
	}
	trueBin := "/bin/true"
	if _, err := os.Stat(trueBin); err != nil {
		trueBin = "/usr/bin/true"
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, unitName)
	if err := os.WriteFile(unit, []byte(re.ReplaceAllString(src, "ExecStart="+trueBin+"$1")), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "verify", unit)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	t.Logf("systemd-analyze verify: exit %v\nstdout: %s\nstderr: %s", runErr, stdout.String(), stderr.String())
	var about []string
	for _, line := range strings.Split(stderr.String()+stdout.String(), "\n") {
		if strings.Contains(line, unitName) || strings.Contains(line, unit) {
			about = append(about, line)
		}
	}
	if len(about) > 0 {
		t.Errorf("systemd-analyze verify complains about the unit:\n%s", strings.Join(about, "\n"))
	}
	if runErr != nil {
		t.Errorf("systemd-analyze verify failed: %v", runErr)
	}
}

// The env example documents every variable the daemon reads, with its default.
func TestEnvExample(t *testing.T) {
	known := knownEnv(t)
	src := readFile(t, filepath.Join(systemdDir, "invalidator.env.example"))
	line := regexp.MustCompile(`^(#\s*)?(INVALIDATOR_[A-Z0-9_]+)=(.*)$`)
	documented := map[string]bool{}
	for n, l := range strings.Split(src, "\n") {
		m := line.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			if strings.Contains(l, "INVALIDATOR_") && !strings.HasPrefix(strings.TrimSpace(l), "#") {
				t.Errorf("invalidator.env.example:%d: not VAR=value: %q", n+1, l)
			}
			continue
		}
		commented, name, value := m[1] != "", m[2], m[3]
		def, ok := known[name]
		if !ok {
			t.Errorf("invalidator.env.example:%d: %s is not a variable the daemon reads", n+1, name)
			continue
		}
		if documented[name] {
			t.Errorf("invalidator.env.example:%d: %s documented twice", n+1, name)
		}
		documented[name] = true
		switch {
		case commented && value != def:
			t.Errorf("invalidator.env.example:%d: commented %s=%q should show the default %q", n+1, name, value, def)
		case !commented && strings.HasSuffix(name, "_URL") && !strings.Contains(value, "CHANGE_ME"):
			t.Errorf("invalidator.env.example:%d: %s must be a placeholder (CHANGE_ME), not a credential", n+1, name)
		}
	}
	for _, name := range sortedKeys(known) {
		if !documented[name] {
			t.Errorf("invalidator.env.example does not document %s (default %q)", name, known[name])
		}
	}
	for _, req := range []string{"INVALIDATOR_POSTGRES_URL", "INVALIDATOR_REDIS_URL"} {
		if !regexp.MustCompile(`(?m)^` + req + `=`).MatchString(src) {
			t.Errorf("invalidator.env.example: required %s must be set (uncommented, with a placeholder)", req)
		}
	}
}
