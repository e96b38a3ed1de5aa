package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// suite runs the workloads against one set of servers.
type suite struct {
	opts options
	log  *progress
	dir  string
	bin  string
	srv  *servers
	sub  *subscriber
}

// runWorkloads runs the chosen workloads in a fixed order, each against a
// freshly started daemon so that its peak RSS is its own.
func (s *suite) runWorkloads(ctx context.Context, rep *report) error {
	sub, err := startSubscriber(ctx, s.srv.redis.Addr(), channelPrefix+"shard:*")
	if err != nil {
		return err
	}
	defer sub.close()
	s.sub = sub
	want := func(w string) bool { return slices.Contains(s.opts.workloads, w) }

	if want(wlBulk) {
		for _, spec := range []bulkSpec{{name: "bulk", maxKeys: 1_000_000}, {name: "bulk-default"}} {
			var runs []bulkResult
			for i := 1; i <= s.opts.bulkRepeat; i++ {
				spec.run = i
				r, err := s.bulk(ctx, spec)
				if err != nil {
					return fmt.Errorf("%s run %d: %w", spec.name, i, err)
				}
				runs = append(runs, r)
			}
			rep.Bulk = append(rep.Bulk, medianBulk(runs))
		}
	}
	if want(wlSteady) {
		for _, rate := range s.opts.rates {
			r, err := s.steady(ctx, rate)
			if err != nil {
				return fmt.Errorf("steady %d/s: %w", rate, err)
			}
			rep.Steady = append(rep.Steady, r)
		}
	}
	if want(wlUnthrottled) {
		r, err := s.unthrottled(ctx)
		if err != nil {
			return fmt.Errorf("unthrottled: %w", err)
		}
		rep.Unthrottled = &r
	}
	if want(wlHuge) {
		r, err := s.huge(ctx)
		if err != nil {
			return fmt.Errorf("huge: %w", err)
		}
		rep.Huge = &r
	}
	if want(wlConsistency) {
		for _, rate := range s.opts.rates {
			r, err := s.consistency(ctx, rate)
			if err != nil {
				return fmt.Errorf("consistency %d/s: %w", rate, err)
			}
			rep.Consistency = append(rep.Consistency, r)
		}
	}
	if want(wlSinks) {
		r, err := s.sinks(ctx)
		rep.Sinks = r
		if err != nil {
			return fmt.Errorf("sinks: %w", err)
		}
	}
	if want(wlNamespace) {
		r, err := s.namespace(ctx)
		if err != nil {
			return fmt.Errorf("namespace: %w", err)
		}
		rep.Namespace = r
	}
	if want(wlScale) {
		r, err := s.scale(ctx)
		if err != nil {
			return fmt.Errorf("scale: %w", err)
		}
		rep.Scale = r
	}
	if n := sub.unparsed(); n > 0 {
		s.log.printf("warning: %d messages did not parse", n)
	}
	return nil
}

// withDaemon runs fn against a daemon started for one workload (after the
// servers have settled), with a
// meter that fn starts when its measured window begins (otherwise at once),
// and, with -perf, a perf recording of the daemon. It returns the usage
// from the meter's start to fn's return.
func (s *suite) withDaemon(ctx context.Context, name string, env []string, fn func(d *daemon, m *meter) error) (u usage, err error) {
	if err := s.srv.settle(ctx); err != nil {
		return u, err
	}
	d, err := s.startDaemon(ctx, name, env...)
	if err != nil {
		return u, err
	}
	defer func() {
		if stopErr := d.stop(); stopErr != nil && err == nil {
			err = fmt.Errorf("stop daemon: %w", stopErr)
		}
	}()
	if err := s.waitCaughtUp(ctx, d); err != nil {
		return u, err
	}
	m, err := s.newMeter(ctx, d)
	if err != nil {
		return u, err
	}
	prof, err := s.startPerf(ctx, d.pid(), name)
	if err != nil {
		return u, err
	}
	defer prof.stop()
	if err := fn(d, m); err != nil {
		if aliveErr := d.alive(); aliveErr != nil {
			return u, fmt.Errorf("%w (%w)", err, aliveErr)
		}
		return u, err
	}
	if !m.started {
		return u, fmt.Errorf("%s: the measured window never started", name)
	}
	return m.stop()
}

// daemonConfirmed is the daemon's slot's confirmed position as PostgreSQL
// prints it, and parsed (ok is false while it has none).
func (s *suite) daemonConfirmed(ctx context.Context) (v string, lsn uint64, ok bool, err error) {
	v, err = queryValue(ctx, s.srv.dbURL, fmt.Sprintf("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '%s'", daemonSlot))
	if err != nil {
		return v, 0, false, err
	}
	lsn, perr := parseLSN(v)
	return v, lsn, perr == nil, nil
}

// waitCaughtUp waits until the daemon's slot has confirmed the WAL written
// before it started (the settle step's VACUUM and CHECKPOINT, the last
// workload's tail): a workload measured while the walsender still decodes
// that backlog would charge its first transactions for it.
func (s *suite) waitCaughtUp(ctx context.Context, d *daemon) error {
	target, err := currentLSN(ctx, s.srv.dbURL)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		v, lsn, ok, err := s.daemonConfirmed(ctx)
		if err != nil {
			return err
		}
		if ok && lsn >= target {
			return nil
		}
		if err := d.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon's slot at %s, not caught up to %X/%X after %s", v, target>>32, uint32(target), readyTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
