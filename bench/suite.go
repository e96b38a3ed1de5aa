package main

import (
	"context"
	"fmt"
	"slices"
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
	sub, err := startSubscriber(ctx, s.srv.rdb, channelPrefix+"shard:*")
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
	if n := sub.unparsed(); n > 0 {
		s.log.printf("warning: %d messages did not parse", n)
	}
	return nil
}

// withDaemon runs fn against a daemon started for one workload, with a
// meter that fn starts when its measured window begins (otherwise at once),
// and, with -perf, a perf recording of the daemon. It returns the usage
// from the meter's start to fn's return.
func (s *suite) withDaemon(ctx context.Context, name string, env []string, fn func(d *daemon, m *meter) error) (u usage, err error) {
	d, err := s.startDaemon(ctx, name, env...)
	if err != nil {
		return u, err
	}
	defer func() {
		if stopErr := d.stop(); stopErr != nil && err == nil {
			err = fmt.Errorf("stop daemon: %w", stopErr)
		}
	}()
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
