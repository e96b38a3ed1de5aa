package main

import (
	"context"
	"fmt"

	"github.com/cachewire/invalidator/publisher"
)

// daemonKeys are the keys the daemon itself writes: the journal stream and
// the marker that records that it has streamed from its slot (see
// cmd/invalidator/heartbeat.go; it names the server, and an older
// version's named the slot only). They come and go during a workload (the
// marker appears at a daemon's first heartbeat), so they are left out of
// key counts.
func (s *suite) daemonKeys() []string {
	return []string{publisher.JournalKey(channelPrefix), channelPrefix + "_slot:" + daemonSlot,
		channelPrefix + "_slot:" + s.srv.systemID + ":" + benchDB + ":" + daemonSlot}
}

// otherKeys returns how many keys Redis holds that are not the daemon's.
func (s *suite) otherKeys(ctx context.Context) (int64, error) {
	pipe := s.srv.rdb.Pipeline()
	size := pipe.DBSize(ctx)
	own := pipe.Exists(ctx, s.daemonKeys()...)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("redis dbsize: %w", err)
	}
	return size.Val() - own.Val(), nil
}

// preload caches the key of every row with id <= perTenant, with
// pipelined MSETs.
func (s *suite) preload(ctx context.Context, perTenant int) error {
	const perCmd, cmdsPerExec = 1000, 20
	pipe := s.srv.rdb.Pipeline()
	args := make([]any, 0, 2*perCmd)
	flush := func(force bool) error {
		if len(args) > 0 {
			pipe.MSet(ctx, args...)
			args = args[:0]
		}
		if pipe.Len() >= cmdsPerExec || (force && pipe.Len() > 0) {
			if _, err := pipe.Exec(ctx); err != nil {
				return fmt.Errorf("redis mset: %w", err)
			}
		}
		return nil
	}
	for t := range tenants {
		for id := 1; id <= perTenant; id++ {
			args = append(args, shardKey(t, id), "cached")
			if len(args) == 2*perCmd {
				if err := flush(false); err != nil {
					return err
				}
			}
		}
	}
	return flush(true)
}
