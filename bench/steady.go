package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// drainQuiet: after pgbench ends, messages are waited for until all
	// have arrived or none came for this long.
	drainQuiet = 2 * time.Second
	drainMax   = time.Minute
)

// steadyResult is a rate-limited run of single-row UPDATE transactions.
type steadyResult struct {
	Rate    int           `json:"rate"`
	Clients int           `json:"clients"`
	Pgbench pgbenchRun    `json:"pgbench"`
	Daemon  daemonMetrics `json:"daemon_metrics"`
	// Floor: the same run read by pg_recvlogical alone (see latencyFloor)
	Floor latencyFloor `json:"floor"`
	flow
	Usage usage `json:"resources"`
	// DaemonCPUUSPerTxn is the daemon's CPU time over the run divided by
	// the transactions pgbench committed, in µs.
	DaemonCPUUSPerTxn float64 `json:"daemon_cpu_us_per_txn"`
}

// flow is what the subscriber saw of a run's transactions.
type flow struct {
	Received   int     `json:"received"` // distinct transactions (xid)
	Duplicates int     `json:"duplicates"`
	Lost       int64   `json:"lost"` // committed (pgbench) - received
	P50MS      float64 `json:"p50_ms"`
	P90MS      float64 `json:"p90_ms"`
	P99MS      float64 `json:"p99_ms"`
	P999MS     float64 `json:"p999_ms"`
	MaxMS      float64 `json:"max_ms"`
	// when pgbench ended: WAL not yet decoded by the walsender, and
	// decoded but not yet confirmed by the daemon
	WalsenderBehindMB float64 `json:"walsender_behind_mb"`
	DaemonBehindMB    float64 `json:"daemon_behind_mb"`
	lastAt            time.Time
}

func (s *suite) steady(ctx context.Context, rate int) (steadyResult, error) {
	r := steadyResult{Rate: rate, Clients: 4}
	name := "steady-" + strconv.Itoa(rate)
	args := pgbenchArgs{clients: 4, threads: 2, rate: rate, duration: s.opts.duration}
	s.log.printf("%s floor: %d single-row transactions/s for %s, read by pg_recvlogical alone", name, rate, s.opts.duration)
	var err error
	if r.Floor, err = s.steadyFloor(ctx, name, args); err != nil {
		return r, fmt.Errorf("floor: %w", err)
	}
	s.log.printf("%s floor: p50 %.2fms p99 %.2fms p99.9 %.2fms (%d commits)", name, r.Floor.P50MS, r.Floor.P99MS, r.Floor.P999MS, r.Floor.Received)
	s.log.printf("%s: %d single-row transactions/s for %s, read by the daemon", name, rate, s.opts.duration)
	var u usage
	if r.Pgbench, r.flow, r.Daemon, u, err = s.pgbenchOnDaemon(ctx, name, args); err != nil {
		return r, err
	}
	r.Usage = u
	if r.Pgbench.Processed > 0 {
		r.DaemonCPUUSPerTxn = u.CPUSeconds * 1e6 / float64(r.Pgbench.Processed)
	}
	s.log.printf("%s: pgbench %.0f tps, p50 %.2fms p90 %.2fms p99 %.2fms p99.9 %.2fms, lost %d, daemon CPU %.1fµs/txn",
		name, r.Pgbench.TPS, r.P50MS, r.P90MS, r.P99MS, r.P999MS, r.Lost, r.DaemonCPUUSPerTxn)
	return r, nil
}

// pgbenchOnDaemon runs pgbench with args against a daemon (withDaemon)
// and returns what pgbench and the subscriber saw (pgbenchFlow), the
// daemon's metrics at the end, and its resource usage.
func (s *suite) pgbenchOnDaemon(ctx context.Context, name string, args pgbenchArgs) (run pgbenchRun, f flow, dm daemonMetrics, u usage, err error) {
	u, err = s.withDaemon(ctx, name, nil, func(d *daemon, m *meter) error {
		var err error
		if run, f, err = s.pgbenchFlow(ctx, m, name, args); err != nil {
			return err
		}
		dm, err = d.scrapeMetrics(ctx)
		return err
	})
	return run, f, dm, u, err
}

// pgbenchFlow runs pgbench, then drains the subscriber and measures the
// messages of the transactions pgbench committed.
func (s *suite) pgbenchFlow(ctx context.Context, m *meter, name string, a pgbenchArgs) (pgbenchRun, flow, error) {
	return s.pgbenchFlowFrom(ctx, m, name, a, s.sub)
}

// pgbenchFlowFrom is pgbenchFlow with the messages read from src.
func (s *suite) pgbenchFlowFrom(ctx context.Context, m *meter, name string, a pgbenchArgs, src recordSource) (pgbenchRun, flow, error) {
	var f flow
	v, err := queryValue(ctx, s.srv.dbURL, "SELECT txid_current() % 4294967296")
	if err != nil {
		return pgbenchRun{}, f, err
	}
	startXid, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return pgbenchRun{}, f, fmt.Errorf("parse xid %q: %w", v, err)
	}
	src.reset()
	if err := m.start(); err != nil {
		return pgbenchRun{}, f, err
	}
	run, err := s.runPgbench(ctx, name, a)
	if err != nil {
		return run, f, err
	}
	if f.WalsenderBehindMB, f.DaemonBehindMB, err = s.behind(ctx, m.walsender); err != nil {
		return run, f, err
	}
	s.log.printf("%s: pgbench committed %d (%.0f tps); draining messages", name, run.Processed, run.TPS)
	drained, err := s.drainFlow(ctx, src, name, uint32(startXid), run.Processed)
	drained.WalsenderBehindMB, drained.DaemonBehindMB = f.WalsenderBehindMB, f.DaemonBehindMB
	return run, drained, err
}

// drainFlow waits until src has a message of want transactions with an
// xid after startXid (or none came for drainQuiet) and measures them.
func (s *suite) drainFlow(ctx context.Context, src recordSource, name string, startXid uint32, want int64) (flow, error) {
	var f flow
	first := map[uint32]record{}
	seen, lastNew := 0, time.Now()
	deadline := time.Now().Add(drainMax)
	for int64(len(first)) < want && time.Since(lastNew) < drainQuiet && time.Now().Before(deadline) {
		recs, total := src.from(seen)
		if total > seen {
			lastNew = time.Now()
		}
		seen = total
		for _, rec := range recs {
			if rec.xid <= startXid {
				continue
			}
			if _, dup := first[rec.xid]; dup {
				f.Duplicates++
				continue
			}
			first[rec.xid] = rec
		}
		select {
		case <-ctx.Done():
			return f, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	f.Received = len(first)
	f.Lost = want - int64(f.Received)
	lat := make([]int64, 0, len(first))
	for _, rec := range first {
		lat = append(lat, rec.atNS/1000-rec.commitUS)
		if rec.at().After(f.lastAt) {
			f.lastAt = rec.at()
		}
	}
	if prefix := s.opts.latencyDump; prefix != "" {
		var sb strings.Builder
		for _, rec := range first {
			fmt.Fprintf(&sb, "%d %d\n", rec.commitUS, rec.atNS/1000-rec.commitUS)
		}
		if err := os.WriteFile(prefix+"."+name, []byte(sb.String()), 0o644); err != nil {
			return f, fmt.Errorf("-latency-dump: %w", err)
		}
	}
	slices.Sort(lat)
	f.P50MS, f.P90MS = percentileMS(lat, 0.50), percentileMS(lat, 0.90)
	f.P99MS, f.P999MS = percentileMS(lat, 0.99), percentileMS(lat, 0.999)
	if len(lat) > 0 {
		f.MaxMS = float64(lat[len(lat)-1]) / 1000
	}
	return f, nil
}

// percentileMS returns the q-quantile (nearest rank) of sorted microsecond
// values, in milliseconds.
func percentileMS(sorted []int64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / 1000
}

// behind returns how far the daemon's walsender is behind the WAL
// (pg_current_wal_lsn - sent_lsn) and how far the daemon is behind its
// walsender (sent_lsn - flush_lsn, the position it confirmed), in MB.
func (s *suite) behind(ctx context.Context, walsender int) (walsenderMB, daemonMB float64, err error) {
	rows, err := query(ctx, s.srv.dbURL, fmt.Sprintf(`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), sent_lsn), pg_wal_lsn_diff(sent_lsn, flush_lsn)
		FROM pg_stat_replication WHERE pid = %d`, walsender))
	if err != nil {
		return 0, 0, err
	}
	if len(rows) != 1 {
		return 0, 0, fmt.Errorf("walsender %d not in pg_stat_replication", walsender)
	}
	w, err1 := strconv.ParseFloat(rows[0][0], 64)
	d, err2 := strconv.ParseFloat(rows[0][1], 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("parse replication positions %q", rows[0])
	}
	return w / (1 << 20), d / (1 << 20), nil
}
