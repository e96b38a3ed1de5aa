package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// bulkSpec is one bulk run: maxKeys 0 leaves INVALIDATOR_MAX_KEYS_PER_TXN
// at the daemon's default.
type bulkSpec struct {
	name    string
	maxKeys int
	run     int // 1, 2, ... of -bulk-repeat
}

// bulkResult: one transaction UPDATEs every row with id <= rows/100 of each
// tenant; times are seconds from the moment the client's COMMIT returned.
type bulkResult struct {
	Name          string `json:"name"`
	MaxKeysPerTxn string `json:"max_keys_per_txn"`
	Rows          int    `json:"rows"`
	// UpdateSeconds is the UPDATE statement itself (before COMMIT).
	UpdateSeconds float64 `json:"update_seconds"`
	// FloorSeconds: until pg_recvlogical received the COMMIT message.
	FloorSeconds float64 `json:"floor_seconds"`
	// DaemonSeconds: until the last preloaded key was deleted.
	DaemonSeconds float64 `json:"daemon_seconds"`
	// MessagesSeconds: until the suite's subscriber received the last
	// message of the transaction.
	MessagesSeconds float64 `json:"messages_seconds"`
	Ratio           float64 `json:"floor_over_daemon"`
	RowsPerSecond   float64 `json:"rows_per_second"`
	Messages        int     `json:"messages"`
	WideMessages    int     `json:"wide_messages"`
	// FloorBytes is what pg_recvlogical wrote (the pgoutput stream).
	FloorBytes int64 `json:"floor_bytes"`
	// how the walsenders handed the transaction over (pg_stat_replication_slots)
	DaemonSlot slotStats `json:"daemon_slot"`
	FloorSlot  slotStats `json:"floor_slot"`
	Usage      usage     `json:"resources"`
	// the runs of -bulk-repeat, in order; the fields above are the median
	// run's (by DaemonSeconds)
	Runs []bulkRun `json:"runs,omitempty"`
}

// bulkTimeout bounds the wait for one bulk transaction to be applied.
const bulkTimeout = 10 * time.Minute

func (s *suite) bulk(ctx context.Context, spec bulkSpec) (bulkResult, error) {
	rows := s.opts.bulkRows
	r := bulkResult{Name: spec.name, Rows: rows, MaxKeysPerTxn: "100000 (default)"}
	var env []string
	if spec.maxKeys > 0 {
		r.MaxKeysPerTxn = strconv.Itoa(spec.maxKeys)
		env = append(env, "INVALIDATOR_MAX_KEYS_PER_TXN="+r.MaxKeysPerTxn)
	}
	s.log.printf("%s (run %d): %d rows in one transaction, INVALIDATOR_MAX_KEYS_PER_TXN=%s", spec.name, spec.run, rows, r.MaxKeysPerTxn)
	u, err := s.withDaemon(ctx, fmt.Sprintf("%s-%d", spec.name, spec.run), env, func(d *daemon, m *meter) error {
		return s.bulkRun(ctx, d, m, spec, &r)
	})
	if err != nil {
		return r, err
	}
	r.Usage = u
	if r.DaemonSeconds > 0 {
		r.Ratio = r.FloorSeconds / r.DaemonSeconds
		r.RowsPerSecond = float64(rows) / r.DaemonSeconds
	}
	s.log.printf("%s: floor %.3fs, daemon %.3fs (messages %.3fs), ratio %.2f, RSS %.1f MB, CPU %.2fs",
		spec.name, r.FloorSeconds, r.DaemonSeconds, r.MessagesSeconds, r.Ratio, u.PeakRSSMB, u.CPUSeconds)
	return r, nil
}

func (s *suite) bulkRun(ctx context.Context, d *daemon, m *meter, spec bulkSpec, r *bulkResult) (err error) {
	perTenant := r.Rows / tenants
	baseline, err := s.otherKeys(ctx)
	if err != nil {
		return err
	}
	s.log.printf("%s: caching %d keys in Redis", spec.name, r.Rows)
	if err := s.preload(ctx, perTenant); err != nil {
		return err
	}
	if n, err := s.otherKeys(ctx); err != nil {
		return err
	} else if n-baseline != int64(r.Rows) {
		return fmt.Errorf("redis holds %d new keys after preloading, want %d", n-baseline, r.Rows)
	}
	fl, err := s.startFloor(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := fl.stop(ctx, s.srv.dbURL); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	conn, err := pgconn.Connect(ctx, s.srv.dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := query(ctx, s.srv.dbURL, fmt.Sprintf("SELECT pg_stat_reset_replication_slot('%s')", daemonSlot)); err != nil {
		return err
	}
	s.sub.reset()
	s.log.printf("%s: UPDATE of %d rows", spec.name, r.Rows)
	if err := m.start(); err != nil {
		return err
	}
	xid, update, committed, err := bulkUpdate(ctx, conn, perTenant)
	if err != nil {
		return err
	}
	r.UpdateSeconds = update.Seconds()
	s.log.printf("%s: committed (UPDATE took %.2fs); waiting for the daemon and the floor", spec.name, r.UpdateSeconds)
	if err := s.waitBulk(ctx, d, fl, xid, committed, baseline, r); err != nil {
		return err
	}
	if r.DaemonSlot, err = s.readSlotStats(ctx, daemonSlot); err != nil {
		return err
	}
	r.FloorSlot, err = s.readSlotStats(ctx, floorSlot)
	return err
}

// waitBulk polls Redis every 2 ms until the preloaded keys are gone, the
// subscriber has the transaction's messages and the floor has its COMMIT.
func (s *suite) waitBulk(ctx context.Context, d *daemon, fl *floor, xid uint32, committed time.Time, baseline int64, r *bulkResult) error {
	var keysAt, lastMsg time.Time
	seen := 0
	deadline := committed.Add(bulkTimeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for polls := 0; ; polls++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-tick.C:
			if now.After(deadline) {
				return fmt.Errorf("not done %s after COMMIT: keys gone %v, %d messages, floor done %v",
					bulkTimeout, !keysAt.IsZero(), r.Messages, isClosed(fl.seen))
			}
		}
		if keysAt.IsZero() {
			n, err := s.otherKeys(ctx)
			if err != nil {
				return err
			}
			if n <= baseline {
				keysAt = time.Now()
			}
		}
		recs, total := s.sub.from(seen)
		seen = total
		for _, rec := range recs {
			if rec.xid != xid {
				continue
			}
			r.Messages++
			if rec.wide {
				r.WideMessages++
			}
			if rec.at().After(lastMsg) {
				lastMsg = rec.at()
			}
		}
		// Messages are published after the deletes, in the same pipeline:
		// once the keys are gone, all of them are on their way. Exact mode
		// has one per row; the wide form has fewer, so wait for a quiet second.
		msgsDone := r.Messages >= r.Rows ||
			(!keysAt.IsZero() && time.Since(later(keysAt, lastMsg)) > time.Second)
		if !keysAt.IsZero() && msgsDone && isClosed(fl.seen) {
			break
		}
		if polls%500 == 0 {
			if err := d.alive(); err != nil {
				return err
			}
		}
	}
	floorAt, _, floorBytes := fl.result()
	r.FloorSeconds = floorAt.Sub(committed).Seconds()
	r.DaemonSeconds = keysAt.Sub(committed).Seconds()
	r.FloorBytes = floorBytes
	if !lastMsg.IsZero() {
		r.MessagesSeconds = lastMsg.Sub(committed).Seconds()
	}
	return nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// bulkUpdate runs the bulk's UPDATE of every row with id <= perTenant as
// one transaction on conn, and returns its xid, how long the UPDATE took
// and when COMMIT returned.
func bulkUpdate(ctx context.Context, conn *pgconn.PgConn, perTenant int) (xid uint32, update time.Duration, committed time.Time, err error) {
	if _, err := queryConn(ctx, conn, "BEGIN"); err != nil {
		return 0, 0, time.Time{}, err
	}
	start := time.Now()
	if _, err := queryConn(ctx, conn, fmt.Sprintf("UPDATE shards SET payload = md5(payload) WHERE id <= %d", perTenant)); err != nil {
		return 0, 0, time.Time{}, err
	}
	update = time.Since(start)
	xidRows, err := queryConn(ctx, conn, "SELECT txid_current() % 4294967296")
	if err != nil {
		return 0, 0, time.Time{}, err
	}
	x, err := strconv.ParseUint(xidRows[0][0], 10, 32)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("parse xid %q: %w", xidRows[0][0], err)
	}
	if _, err := queryConn(ctx, conn, "COMMIT"); err != nil {
		return 0, 0, time.Time{}, err
	}
	return uint32(x), update, time.Now(), nil
}
