package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// hugeResult is one transaction updating every row of the table, with the
// daemon's default INVALIDATOR_MAX_KEYS_PER_TXN.
type hugeResult struct {
	Rows          int     `json:"rows"`
	MaxKeysPerTxn string  `json:"max_keys_per_txn"`
	UpdateSeconds float64 `json:"update_seconds"`
	// ConfirmedSeconds: from COMMIT to the slot's confirmed position passing
	// the commit (the daemon confirms only what Redis acknowledged).
	ConfirmedSeconds float64 `json:"confirmed_seconds"`
	Messages         int     `json:"messages"`
	WideMessages     int     `json:"wide_messages"`
	Usage            usage   `json:"resources"`
}

const hugeTimeout = 15 * time.Minute

func (s *suite) huge(ctx context.Context) (hugeResult, error) {
	r := hugeResult{Rows: s.opts.hugeRows, MaxKeysPerTxn: "100000 (default)"}
	s.log.printf("huge: UPDATE of %d rows in one transaction, default INVALIDATOR_MAX_KEYS_PER_TXN", r.Rows)
	u, err := s.withDaemon(ctx, "huge", nil, func(_ *daemon, m *meter) error { return s.hugeRun(ctx, m, &r) })
	if err != nil {
		return r, err
	}
	r.Usage = u
	s.log.printf("huge: confirmed %.2fs after COMMIT, RSS %.1f MB, CPU %.2fs", r.ConfirmedSeconds, u.PeakRSSMB, u.CPUSeconds)
	return r, nil
}

func (s *suite) hugeRun(ctx context.Context, m *meter, r *hugeResult) error {
	conn, err := pgconn.Connect(ctx, s.srv.dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	s.sub.reset()
	if err := m.start(); err != nil {
		return err
	}
	if _, err := queryConn(ctx, conn, "BEGIN"); err != nil {
		return err
	}
	start := time.Now()
	if _, err := queryConn(ctx, conn, "UPDATE shards SET payload = md5(payload)"); err != nil {
		return err
	}
	r.UpdateSeconds = time.Since(start).Seconds()
	rows, err := queryConn(ctx, conn, "SELECT txid_current() % 4294967296")
	if err != nil {
		return err
	}
	xid64, err := strconv.ParseUint(rows[0][0], 10, 32)
	if err != nil {
		return fmt.Errorf("parse xid %q: %w", rows[0][0], err)
	}
	xid := uint32(xid64)
	if _, err := queryConn(ctx, conn, "COMMIT"); err != nil {
		return err
	}
	committed := time.Now()
	s.log.printf("huge: committed (UPDATE took %.1fs); waiting for the daemon to confirm", r.UpdateSeconds)

	// The messages carry the commit LSN; the daemon confirms the commit's
	// end (> commit LSN) only once Redis has acknowledged everything.
	var commitLSN uint64
	seen := 0
	deadline := committed.Add(hugeTimeout)
	for {
		recs, total := s.sub.from(seen)
		seen = total
		for _, rec := range recs {
			if rec.xid == xid {
				commitLSN = rec.lsn
				r.Messages++
				if rec.wide {
					r.WideMessages++
				}
			}
		}
		if commitLSN != 0 {
			_, confirmed, ok, err := s.daemonConfirmed(ctx)
			if err != nil {
				return err
			}
			if ok && confirmed > commitLSN {
				r.ConfirmedSeconds = time.Since(committed).Seconds()
				return s.countRest(ctx, xid, seen, r)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not confirmed %s after COMMIT (%d messages seen)", hugeTimeout, r.Messages)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// countRest counts the transaction's messages still arriving after the
// confirmation, until none came for half a second (at most 30 s).
func (s *suite) countRest(ctx context.Context, xid uint32, seen int, r *hugeResult) error {
	lastNew, deadline := time.Now(), time.Now().Add(30*time.Second)
	for time.Since(lastNew) < 500*time.Millisecond && time.Now().Before(deadline) {
		recs, total := s.sub.from(seen)
		if total > seen {
			lastNew = time.Now()
		}
		seen = total
		for _, rec := range recs {
			if rec.xid == xid {
				r.Messages++
				if rec.wide {
					r.WideMessages++
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
