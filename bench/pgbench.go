package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"time"
)

// pgbenchRun is what pgbench reported.
type pgbenchRun struct {
	Processed int64   `json:"transactions"`
	Failed    int64   `json:"failed"`
	TPS       float64 `json:"tps"`
	LatencyMS float64 `json:"latency_avg_ms"`
	ended     time.Time
}

// pgbenchArgs describes one pgbench run of the single-row UPDATE script.
type pgbenchArgs struct {
	clients, threads int
	rate             int // 0: unthrottled
	duration         time.Duration
	script           string // pgbench script; "" is updateScript
}

// updateScript is one single-row UPDATE transaction on a random preloaded row.
func updateScript(perTenant int) string {
	return fmt.Sprintf(`\set t random(0, %d)
\set id random(1, %d)
UPDATE shards SET payload = md5(random()::text) WHERE tenant_id = 't' || CAST(:t AS text) AND id = :id;
`, tenants-1, perTenant)
}

// runPgbench runs pgbench with the update script and parses its summary.
func (s *suite) runPgbench(ctx context.Context, name string, a pgbenchArgs) (pgbenchRun, error) {
	var res pgbenchRun
	script, text := filepath.Join(s.dir, "update.sql"), updateScript(s.opts.hugeRows/tenants)
	if a.script != "" {
		script, text = filepath.Join(s.dir, name+".sql"), a.script
	}
	if err := os.WriteFile(script, []byte(text), 0o644); err != nil {
		return res, fmt.Errorf("write pgbench script: %w", err)
	}
	secs := int(math.Ceil(a.duration.Seconds()))
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.srv.pg.Port), "-U", "postgres",
		"-n", "-M", "prepared", "-f", script,
		"-c", strconv.Itoa(a.clients), "-j", strconv.Itoa(a.threads), "-T", strconv.Itoa(secs)}
	if a.rate > 0 {
		args = append(args, "-R", strconv.Itoa(a.rate))
	}
	args = append(args, benchDB)
	bin, err := exec.LookPath("pgbench")
	if err != nil {
		bin = "/usr/lib/postgresql/15/bin/pgbench"
	}
	// bounded: -T plus a generous margin
	ctx, cancel := context.WithTimeout(ctx, a.duration+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	cmd.SysProcAttr = ownSession()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	s.log.printf("%s: pgbench %v", name, args)
	err = cmd.Run()
	res.ended = time.Now()
	if err := os.WriteFile(filepath.Join(s.dir, "pgbench-"+name+".log"), out.Bytes(), 0o644); err != nil {
		return res, fmt.Errorf("write pgbench log: %w", err)
	}
	if err != nil {
		return res, fmt.Errorf("pgbench: %w\n%s", err, out.String())
	}
	return res, parsePgbench(out.Bytes(), &res)
}

// parsePgbench reads pgbench's (PostgreSQL 15) summary lines.
func parsePgbench(out []byte, res *pgbenchRun) error {
	find := func(re string) (string, bool) {
		m := regexp.MustCompile(re).FindSubmatch(out)
		if m == nil {
			return "", false
		}
		return string(m[1]), true
	}
	v, ok := find(`(?m)^number of transactions actually processed: (\d+)`)
	if !ok {
		return fmt.Errorf("pgbench output has no transaction count:\n%s", out)
	}
	res.Processed, _ = strconv.ParseInt(v, 10, 64)
	if v, ok := find(`(?m)^number of failed transactions: (\d+)`); ok {
		res.Failed, _ = strconv.ParseInt(v, 10, 64)
	}
	if v, ok := find(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`); ok {
		res.TPS, _ = strconv.ParseFloat(v, 64)
	}
	if v, ok := find(`(?m)^latency average = ([0-9.]+) ms`); ok {
		res.LatencyMS, _ = strconv.ParseFloat(v, 64)
	}
	return nil
}
