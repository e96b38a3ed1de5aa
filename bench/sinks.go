package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cachewire/invalidator/cdc"
)

// sinkResult is the sinks workload for one sink: steady runs at each rate
// and the bulk transaction, through the daemon and through a bare client
// of the sink (the floor) in the same run.
type sinkResult struct {
	Sink   string       `json:"sink"`
	Server string       `json:"server"`
	Steady []sinkSteady `json:"steady"`
	Bulk   *sinkBulk    `json:"bulk,omitempty"`
	// PeakRSSMB is the highest of the sink's daemon runs.
	PeakRSSMB float64 `json:"daemon_peak_rss_mb"`
}

// sinkSteady: pgbench -R rate through the daemon to the sink, and the
// floor: the same number of messages of the same sizes sent at the same
// rate by a bare client; latency = receive time - commit_time (the floor
// stamps the time it sends).
type sinkSteady struct {
	Rate    int        `json:"rate"`
	Pgbench pgbenchRun `json:"pgbench"`
	flow
	Floor sinkFloorFlow `json:"floor"`
	Usage usage         `json:"resources"`
}

// sinkFloorFlow is what the sink's subscriber saw of the floor's messages.
type sinkFloorFlow struct {
	Sent       int `json:"sent"`
	FailedAcks int `json:"failed_acks,omitempty"`
	flow
}

// sinkBulk: one transaction UPDATEs bulk-rows rows (one message each,
// INVALIDATOR_MAX_KEYS_PER_TXN raised so that no row takes the wide form);
// times are seconds from the moment COMMIT returned (the floor: from its
// first send).
type sinkBulk struct {
	Rows          int     `json:"rows"`
	UpdateSeconds float64 `json:"update_seconds"`
	// DaemonSeconds: until the subscriber had every message, the daemon
	// had confirmed the transaction (ConfirmedSeconds, when it did) and, on
	// the cluster, every preloaded key was gone: the floor's time also
	// includes its acknowledgements.
	DaemonSeconds float64 `json:"daemon_seconds"`
	// KeysSeconds: cluster only, until the preloaded keys were gone.
	KeysSeconds float64 `json:"keys_seconds,omitempty"`
	// ConfirmedSeconds: until the slot's confirmed position passed the
	// commit, which the daemon confirms once the sink has acknowledged the
	// whole transaction; 0 if not within confirmWait of the last message.
	ConfirmedSeconds float64 `json:"confirmed_seconds"`
	// Messages are the distinct messages received (by channel), Duplicates
	// the others: a JetStream batch sent again reaches a core subscriber twice.
	Messages   int `json:"messages"`
	Duplicates int `json:"duplicates"`
	Lost       int `json:"lost"`
	// FloorSeconds: the bare client sending the same messages (cluster:
	// UNLINK and PUBLISH of the same keys) until its subscriber had all.
	FloorSeconds    float64 `json:"floor_seconds"`
	FloorMessages   int     `json:"floor_messages"`
	FloorDuplicates int     `json:"floor_duplicates"`
	FloorLost       int     `json:"floor_lost"`
	Ratio           float64 `json:"daemon_over_floor"`
	Usage           usage   `json:"resources"`
}

// sinks runs the sinks workload for every sink of -sinks.
func (s *suite) sinks(ctx context.Context) ([]sinkResult, error) {
	var out []sinkResult
	for _, kind := range s.opts.sinks {
		r, err := s.sink(ctx, kind)
		if err != nil {
			return out, fmt.Errorf("%s: %w", kind, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (s *suite) sink(ctx context.Context, kind string) (sinkResult, error) {
	res := sinkResult{Sink: kind}
	s.log.printf("sinks-%s: starting its servers", kind)
	rig, err := startSinkRig(ctx, kind, s.daemonKeys())
	if err != nil {
		return res, err
	}
	defer rig.close()
	res.Server = rig.server
	for _, rate := range s.opts.rates {
		st, err := s.sinkSteady(ctx, rig, rate)
		if err != nil {
			return res, fmt.Errorf("steady %d/s: %w", rate, err)
		}
		res.Steady = append(res.Steady, st)
		res.PeakRSSMB = max(res.PeakRSSMB, st.Usage.PeakRSSMB)
	}
	b, err := s.sinkBulk(ctx, rig)
	if err != nil {
		return res, fmt.Errorf("bulk: %w", err)
	}
	res.Bulk = &b
	res.PeakRSSMB = max(res.PeakRSSMB, b.Usage.PeakRSSMB)
	return res, nil
}

func (s *suite) sinkSteady(ctx context.Context, rig *sinkRig, rate int) (sinkSteady, error) {
	r := sinkSteady{Rate: rate}
	name := fmt.Sprintf("sinks-%s-steady-%d", rig.kind, rate)
	dur := s.opts.sinksDuration
	args := pgbenchArgs{clients: 4, threads: 2, rate: rate, duration: dur}
	s.log.printf("%s: %d single-row transactions/s for %s, read by the daemon", name, rate, dur)
	u, err := s.withDaemon(ctx, name, rig.daemonEnv(), func(d *daemon, m *meter) error {
		var err error
		r.Pgbench, r.flow, err = s.pgbenchFlowFrom(ctx, m, name, args, rig.src)
		return err
	})
	if err != nil {
		return r, err
	}
	r.Usage = u
	s.log.printf("%s: pgbench %.0f tps, p50 %.2fms p99 %.2fms, lost %d", name, r.Pgbench.TPS, r.P50MS, r.P99MS, r.Lost)
	// the floor: as many messages as pgbench committed, at its rate
	n := int(r.Pgbench.Processed)
	s.log.printf("%s floor: %d messages at %d/s from a bare client", name, n, rate)
	if r.Floor, err = s.sinkFloorSteady(ctx, rig, name, rate, n); err != nil {
		return r, fmt.Errorf("floor: %w", err)
	}
	s.log.printf("%s floor: p50 %.2fms p99 %.2fms, lost %d", name, r.Floor.P50MS, r.Floor.P99MS, r.Floor.Lost)
	return r, nil
}

// sinkFloorSteady sends n messages at rate/s (every millisecond, those
// that are due), each its own transaction (xid), stamped with the time it
// is handed to the client, on random rows as pgbench picks them.
func (s *suite) sinkFloorSteady(ctx context.Context, rig *sinkRig, name string, rate, n int) (sinkFloorFlow, error) {
	f := sinkFloorFlow{}
	lsn, err := currentLSN(ctx, s.srv.dbURL)
	if err != nil {
		return f, err
	}
	const baseXid = 1 << 20 // as many digits as the bench's xids
	perTenant := s.opts.hugeRows / tenants
	rig.src.reset()
	var futures []jetstream.PubAckFuture
	var batch []floorMsg
	rows := make([][2]int, 0, 64)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for f.Sent < n {
		select {
		case <-ctx.Done():
			return f, ctx.Err()
		case <-tick.C:
		}
		due := min(n, int(time.Since(start).Seconds()*float64(rate))) - f.Sent
		if due <= 0 {
			continue
		}
		batch = batch[:0]
		now := time.Now()
		for i := range due {
			rows = append(rows[:0], [2]int{rand.IntN(tenants), 1 + rand.IntN(perTenant)})
			batch = floorBatch(batch, rows, cdc.LSN(lsn), uint32(baseXid+f.Sent+i+1), now)
		}
		if err := rig.floorSend(ctx, batch, name+"/", &futures); err != nil {
			return f, err
		}
		f.Sent += due
	}
	if f.FailedAcks, err = rig.floorFinish(ctx, futures); err != nil {
		return f, err
	}
	f.flow, err = s.drainFlow(ctx, rig.src, name+"-floor", baseXid, int64(n))
	return f, err
}

func (s *suite) sinkBulk(ctx context.Context, rig *sinkRig) (sinkBulk, error) {
	rows := s.opts.bulkRows
	r := sinkBulk{Rows: rows}
	name := "sinks-" + rig.kind + "-bulk"
	s.log.printf("%s: %d rows in one transaction, read by the daemon (INVALIDATOR_MAX_KEYS_PER_TXN=1000000)", name, rows)
	env := append(rig.daemonEnv(), "INVALIDATOR_MAX_KEYS_PER_TXN=1000000")
	u, err := s.withDaemon(ctx, name, env, func(d *daemon, m *meter) error {
		return s.sinkBulkRun(ctx, rig, d, m, &r)
	})
	if err != nil {
		return r, err
	}
	r.Usage = u
	s.log.printf("%s: daemon %.3fs, %d messages (%d duplicates), lost %d, confirmed %.3fs (0: not within %s)",
		name, r.DaemonSeconds, r.Messages, r.Duplicates, r.Lost, r.ConfirmedSeconds, confirmWait)
	if err := s.sinkBulkFloor(ctx, rig, name, &r); err != nil {
		return r, fmt.Errorf("floor: %w", err)
	}
	if r.FloorSeconds > 0 {
		r.Ratio = r.DaemonSeconds / r.FloorSeconds
	}
	s.log.printf("%s floor: %.3fs, %d messages, lost %d; daemon/floor %.2f", name, r.FloorSeconds, r.FloorMessages, r.FloorLost, r.Ratio)
	return r, nil
}

func (s *suite) sinkBulkRun(ctx context.Context, rig *sinkRig, d *daemon, m *meter, r *sinkBulk) error {
	perTenant := r.Rows / tenants
	baseline, err := rig.prepare(ctx, perTenant)
	if err != nil {
		return err
	}
	conn, err := pgconn.Connect(ctx, s.srv.dbURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rig.src.reset()
	if err := m.start(); err != nil {
		return err
	}
	xid, update, committed, err := bulkUpdate(ctx, conn, perTenant)
	if err != nil {
		return err
	}
	r.UpdateSeconds = update.Seconds()
	w, err := s.waitSinkBulk(ctx, rig, d, xid, r.Rows, baseline)
	if err != nil {
		return err
	}
	r.Messages, r.Lost = w.got, r.Rows-w.got
	if !w.keysAt.IsZero() && rig.kind == sinkCluster {
		r.KeysSeconds = w.keysAt.Sub(committed).Seconds()
	}
	if !w.lastMsg.IsZero() {
		r.DaemonSeconds = later(w.lastMsg, w.keysAt).Sub(committed).Seconds()
	}
	if w.lsn != 0 {
		if r.ConfirmedSeconds, err = s.waitConfirmed(ctx, d, w.lsn, committed); err != nil {
			return err
		}
		r.DaemonSeconds = max(r.DaemonSeconds, r.ConfirmedSeconds)
	}
	// duplicates up to now: a batch sent again while unconfirmed arrives twice
	recs, _ := rig.src.from(0)
	total := 0
	for _, rec := range recs {
		if rec.xid == xid {
			total++
		}
	}
	r.Duplicates = total - w.got
	return nil
}

// waitConfirmed polls the daemon's slot until its confirmed position
// passes commitLSN, for confirmWait at most, and returns the seconds
// since committed (0: not confirmed in time).
func (s *suite) waitConfirmed(ctx context.Context, d *daemon, commitLSN uint64, committed time.Time) (float64, error) {
	deadline := time.Now().Add(confirmWait)
	for time.Now().Before(deadline) {
		_, confirmed, ok, err := s.daemonConfirmed(ctx)
		if err != nil {
			return 0, err
		}
		if ok && confirmed > commitLSN {
			return time.Since(committed).Seconds(), nil
		}
		if err := d.alive(); err != nil {
			return 0, err
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return 0, nil
}

// sinkBulkFloor sends the bulk's messages (cluster: after caching its
// keys again) with the bare client, in parts of floorPart rows.
func (s *suite) sinkBulkFloor(ctx context.Context, rig *sinkRig, name string, r *sinkBulk) error {
	perTenant := r.Rows / tenants
	baseline, err := rig.prepare(ctx, perTenant)
	if err != nil {
		return err
	}
	lsn, err := currentLSN(ctx, s.srv.dbURL)
	if err != nil {
		return err
	}
	const xid = 1 << 21
	// rendered before the clock starts, as the daemon's are when it sends
	msgs := make([]floorMsg, 0, r.Rows)
	rows := make([][2]int, 0, r.Rows)
	for t := range tenants {
		for id := 1; id <= perTenant; id++ {
			rows = append(rows, [2]int{t, id})
		}
	}
	msgs = floorBatch(msgs, rows, cdc.LSN(lsn), xid, time.Now())
	s.log.printf("%s floor: %d messages from a bare client", name, r.Rows)
	rig.src.reset()
	start := time.Now()
	var futures []jetstream.PubAckFuture
	for i := 0; i < len(msgs); i += floorPart {
		if err := rig.floorSend(ctx, msgs[i:min(i+floorPart, len(msgs))], name+"/", &futures); err != nil {
			return err
		}
	}
	if _, err := rig.floorFinish(ctx, futures); err != nil {
		return err
	}
	sent := time.Now()
	w, err := s.waitSinkBulk(ctx, rig, nil, xid, r.Rows, baseline)
	if err != nil {
		return err
	}
	r.FloorMessages, r.FloorDuplicates, r.FloorLost = w.got, w.dups, r.Rows-w.got
	r.FloorSeconds = later(sent, w.lastMsg).Sub(start).Seconds()
	return nil
}

// bulkSilence: a bulk's messages are given up on when none has come for
// this long (the first needs the whole transaction decoded).
const bulkSilence = 30 * time.Second

// confirmWait bounds the wait for the daemon to confirm the bulk after
// its messages have arrived.
const confirmWait = 30 * time.Second

// bulkWait is what waitSinkBulk saw.
type bulkWait struct {
	got, dups       int // distinct messages, and the others
	lastMsg, keysAt time.Time
	lsn             uint64 // the transaction's commit LSN, from its messages
}

// waitSinkBulk polls every 2 ms until the subscriber has want messages of
// the transaction xid (or none came for drainQuiet) and, on the cluster,
// the preloaded keys are gone. d may be nil (the floor).
func (s *suite) waitSinkBulk(ctx context.Context, rig *sinkRig, d *daemon, xid uint32, want int, baseline int64) (w bulkWait, err error) {
	distinct := make(map[uint64]struct{}, want)
	seen, lastNew := 0, time.Now()
	deadline := time.Now().Add(bulkTimeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for polls := 0; ; polls++ {
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case now := <-tick.C:
			if now.After(deadline) {
				return w, fmt.Errorf("not done %s after COMMIT: %d of %d messages, keys gone %v", bulkTimeout, w.got, want, !w.keysAt.IsZero())
			}
		}
		if w.keysAt.IsZero() && polls%5 == 0 {
			n, err := rig.otherKeys(ctx)
			if err != nil {
				return w, err
			}
			if n <= baseline {
				w.keysAt = time.Now()
			}
		}
		recs, total := rig.src.from(seen)
		if total > seen {
			lastNew = time.Now()
		}
		seen = total
		for _, rec := range recs {
			if rec.xid != xid {
				continue
			}
			w.lsn = rec.lsn
			if _, dup := distinct[rec.channel]; dup {
				w.dups++
				continue
			}
			distinct[rec.channel] = struct{}{}
			w.got++
			if rec.at().After(w.lastMsg) {
				w.lastMsg = rec.at()
			}
		}
		// none at all for bulkSilence: they are not coming
		msgsDone := w.got >= want || (w.got > 0 && time.Since(lastNew) > drainQuiet) || time.Since(lastNew) > bulkSilence
		if !w.keysAt.IsZero() && msgsDone {
			return w, nil
		}
		if d != nil && polls%500 == 0 {
			if err := d.alive(); err != nil {
				return w, err
			}
		}
	}
}
