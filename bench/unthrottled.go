package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cachewire/invalidator/publisher"
)

// unthrottledResult is pgbench without a rate limit, twice: once read by
// pg_recvlogical alone (the floor: can logical decoding itself keep up on
// this machine?), then by the daemon alone.
type unthrottledResult struct {
	Clients int           `json:"clients"`
	Pgbench pgbenchRun    `json:"pgbench"`
	Daemon  daemonMetrics `json:"daemon_metrics"`
	flow
	// LagSeconds: from the last transaction's commit (its commit_time) to
	// Redis deleting its keys: the time Redis gave the journal entry that
	// the daemon appends right after the transaction's UNLINK (the entry
	// ID, in ms). Both clocks are this machine's.
	LagSeconds float64 `json:"lag_at_end_seconds"`
	// LastMessageSeconds: from pgbench's exit to the suite's subscriber
	// receiving the last message (0 when before); it adds the
	// subscriber's own delay, itself short of CPU during the run.
	LastMessageSeconds float64 `json:"last_message_after_end_seconds"`
	Usage              usage   `json:"resources"`
	// the floor run: pgbench with pg_recvlogical as the only consumer
	FloorPgbench pgbenchRun `json:"floor_pgbench"`
	// FloorLagSeconds: from pgbench's exit until pg_recvlogical's walsender
	// had sent everything written until then (sent_lsn).
	FloorLagSeconds float64 `json:"floor_lag_at_end_seconds"`
}

func (s *suite) unthrottled(ctx context.Context) (unthrottledResult, error) {
	r := unthrottledResult{Clients: 8}
	args := pgbenchArgs{clients: 8, threads: 2, duration: s.opts.duration}
	s.log.printf("unthrottled floor: pgbench, 8 clients, %s, read by pg_recvlogical alone", s.opts.duration)
	if err := s.srv.settle(ctx); err != nil {
		return r, err
	}
	var err error
	if r.FloorPgbench, r.FloorLagSeconds, err = s.unthrottledFloor(ctx, args); err != nil {
		return r, fmt.Errorf("floor: %w", err)
	}
	s.log.printf("unthrottled floor: %.0f tps, pg_recvlogical lag at end %.3fs", r.FloorPgbench.TPS, r.FloorLagSeconds)

	s.log.printf("unthrottled: pgbench, 8 clients, %s, read by the daemon", s.opts.duration)
	var u usage
	if r.Pgbench, r.flow, r.Daemon, u, err = s.pgbenchOnDaemon(ctx, "unthrottled", args); err != nil {
		return r, err
	}
	r.Usage = u
	if !r.lastAt.IsZero() {
		r.LastMessageSeconds = max(0, r.lastAt.Sub(r.Pgbench.ended).Seconds())
	}
	if r.LagSeconds, err = s.lastDeletionLag(ctx); err != nil {
		return r, err
	}
	s.log.printf("unthrottled: %.0f tps, lag at end %.3fs (last message received %.3fs after pgbench), lost %d",
		r.Pgbench.TPS, r.LagSeconds, r.LastMessageSeconds, r.Lost)
	return r, nil
}

// lastDeletionLag is how long after its commit the last transaction's keys
// were deleted: the daemon appends a transaction's journal entry in the
// round trip that unlinks its keys, right after the UNLINK, and Redis
// names the entry after its clock in milliseconds.
func (s *suite) lastDeletionLag(ctx context.Context) (float64, error) {
	entries, err := s.srv.rdb.XRevRangeN(ctx, publisher.JournalKey(channelPrefix), "+", "-", 1).Result()
	if err != nil {
		return 0, fmt.Errorf("last journal entry: %w", err)
	}
	if len(entries) == 0 {
		return 0, errors.New("the journal is empty")
	}
	e := entries[0]
	msStr, _, _ := strings.Cut(e.ID, "-")
	ms, err := strconv.ParseInt(msStr, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("journal entry ID %q: %w", e.ID, err)
	}
	ct, _ := e.Values["commit_time"].(string)
	commit, err := time.Parse(publisher.TimeLayout, ct)
	if err != nil {
		return 0, fmt.Errorf("journal entry %s: commit_time %q: %w", e.ID, ct, err)
	}
	return max(0, time.UnixMilli(ms).Sub(commit).Seconds()), nil
}

// unthrottledFloor runs pgbench while only pg_recvlogical reads the
// stream, and returns how long after pgbench's exit its walsender had sent
// all WAL written until then. The daemon's slot, idle meanwhile, is then
// moved past that WAL so the daemon does not start with a backlog.
func (s *suite) unthrottledFloor(ctx context.Context, args pgbenchArgs) (_ pgbenchRun, lag float64, err error) {
	fl, err := s.startFloor(ctx)
	if err != nil {
		return pgbenchRun{}, 0, err
	}
	defer func() {
		if stopErr := fl.stop(ctx, s.srv.dbURL); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	v, err := queryValue(ctx, s.srv.dbURL, fmt.Sprintf("SELECT active_pid FROM pg_replication_slots WHERE slot_name = '%s'", floorSlot))
	if err != nil {
		return pgbenchRun{}, 0, err
	}
	walsender, err := strconv.Atoi(v)
	if err != nil {
		return pgbenchRun{}, 0, fmt.Errorf("floor walsender pid %q: %w", v, err)
	}
	run, err := s.runPgbench(ctx, "unthrottled-floor", args)
	if err != nil {
		return run, 0, err
	}
	end, err := currentLSN(ctx, s.srv.dbURL)
	if err != nil {
		return run, 0, err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		v, err := queryValue(ctx, s.srv.dbURL, fmt.Sprintf("SELECT sent_lsn FROM pg_stat_replication WHERE pid = %d", walsender))
		if err != nil {
			return run, 0, err
		}
		if sent, err := parseLSN(v); err == nil && sent >= end {
			lag = time.Since(run.ended).Seconds()
			break
		}
		if time.Now().After(deadline) {
			return run, 0, fmt.Errorf("pg_recvlogical's walsender not at %X/%X 5 minutes after pgbench", end>>32, uint32(end))
		}
		select {
		case <-ctx.Done():
			return run, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	if _, err := query(ctx, s.srv.dbURL, fmt.Sprintf(
		"SELECT pg_replication_slot_advance(slot_name, pg_current_wal_lsn()) FROM pg_replication_slots WHERE slot_name = '%s'", daemonSlot)); err != nil {
		return run, lag, fmt.Errorf("advance the daemon's slot: %w", err)
	}
	return run, lag, nil
}
