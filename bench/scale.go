package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
)

const (
	// unrelatedPrefix names the keys DEBUG POPULATE adds; no rule renders them.
	unrelatedPrefix = "unrelated:"
	// scaleItemKeys is how many keys of scale_items are cached before its TRUNCATE.
	scaleItemKeys = 1000
	// streamedPerTenant: the streamed UPDATE takes the rows with id <= it.
	streamedPerTenant = 100
	// streamedMaxKeys is the key bound of the streamed step's daemon, so
	// that a transaction of a few MB goes past it.
	streamedMaxKeys = 1000
	scaleTimeout    = 10 * time.Minute
)

// scaleResult is one keyspace size of the scale workload.
type scaleResult struct {
	UnrelatedKeys int64   `json:"unrelated_keys"`
	RedisMemoryMB float64 `json:"redis_used_memory_mb"`
	// TruncateSeconds: from the COMMIT of a TRUNCATE of scale_items to the
	// last of its cached keys deleted (the all-'*' wide form, scanned).
	TruncateSeconds float64 `json:"truncate_seconds"`
	// StreamedSeconds: from the COMMIT of a streamed UPDATE of
	// StreamedRows rows past the key bound to the last of their cached
	// keys deleted (the wide form per tenant, scanned).
	StreamedSeconds float64   `json:"streamed_seconds"`
	StreamedRows    int       `json:"streamed_rows"`
	StreamedSlot    slotStats `json:"streamed_slot"`
	// Bulk is the default-bound bulk run (exact keys past the bound, ADR 27).
	Bulk bulkResult `json:"bulk"`
}

// scale runs, for each size of -scale-keys (the unrelated keys Redis
// holds: a SCAN walks all of them, an exact delete none), a TRUNCATE, a streamed
// transaction past the bound and the default-bound bulk with that many
// unrelated keys in Redis, then removes them.
func (s *suite) scale(ctx context.Context) ([]scaleResult, error) {
	var out []scaleResult
	for _, n := range s.opts.scaleKeys {
		r := scaleResult{UnrelatedKeys: n}
		if err := s.populate(ctx, n); err != nil {
			return out, err
		}
		mem, err := s.redisMemoryMB(ctx)
		if err != nil {
			return out, err
		}
		r.RedisMemoryMB = mem
		label := keyspaceLabel(n)
		if r.TruncateSeconds, err = s.scaleTruncate(ctx, label); err != nil {
			return out, fmt.Errorf("truncate with %s unrelated keys: %w", label, err)
		}
		if err := s.scaleStreamed(ctx, label, &r); err != nil {
			return out, fmt.Errorf("streamed with %s unrelated keys: %w", label, err)
		}
		if r.Bulk, err = s.bulk(ctx, bulkSpec{name: "scale-bulk-" + label, run: 1}); err != nil {
			return out, fmt.Errorf("bulk with %s unrelated keys: %w", label, err)
		}
		s.log.printf("scale %s: truncate %.3fs, streamed %.3fs, bulk daemon %.3fs (floor %.3fs)",
			label, r.TruncateSeconds, r.StreamedSeconds, r.Bulk.DaemonSeconds, r.Bulk.FloorSeconds)
		out = append(out, r)
	}
	return out, s.dropUnrelated(ctx)
}

func keyspaceLabel(n int64) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.FormatInt(n/1_000_000, 10) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.FormatInt(n/1000, 10) + "k"
	}
	return strconv.FormatInt(n, 10)
}

// populate makes Redis hold n unrelated keys (DEBUG POPULATE adds the
// missing ones of unrelated::0 … unrelated::n-1).
func (s *suite) populate(ctx context.Context, n int64) error {
	if n == 0 {
		return nil
	}
	start := time.Now()
	// a client of its own: ten million keys take longer than a read timeout
	c := redis.NewClient(&redis.Options{Addr: s.srv.redis.Addr(), DisableIdentity: true, ReadTimeout: -1, PoolSize: 1})
	defer c.Close()
	if err := c.Do(ctx, "DEBUG", "POPULATE", n, unrelatedPrefix).Err(); err != nil {
		return fmt.Errorf("redis debug populate %d: %w", n, err)
	}
	s.log.printf("scale: Redis holds %d unrelated keys (%.1fs)", n, time.Since(start).Seconds())
	return nil
}

// dropUnrelated deletes the unrelated keys again, so that a later
// workload finds the keyspace as before: FLUSHDB ASYNC (a SCAN of ten
// million keys takes minutes), keeping the daemon's own keys (DUMP, then
// RESTORE). Nothing else is left by then: every workload's keys are gone.
func (s *suite) dropUnrelated(ctx context.Context) error {
	start := time.Now()
	kept := map[string]string{}
	for _, k := range s.daemonKeys() {
		v, err := s.srv.rdb.Dump(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return fmt.Errorf("redis dump %s: %w", k, err)
		}
		kept[k] = v
	}
	if err := s.srv.rdb.FlushDBAsync(ctx).Err(); err != nil {
		return fmt.Errorf("redis flushdb: %w", err)
	}
	for k, v := range kept {
		if err := s.srv.rdb.Restore(ctx, k, 0, v).Err(); err != nil {
			return fmt.Errorf("redis restore %s: %w", k, err)
		}
	}
	s.log.printf("scale: unrelated keys removed (%.1fs)", time.Since(start).Seconds())
	return nil
}

func (s *suite) redisMemoryMB(ctx context.Context) (float64, error) {
	info, err := s.srv.rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("redis info memory: %w", err)
	}
	v, ok := infoField(info, "used_memory")
	if !ok {
		return 0, fmt.Errorf("redis info memory has no used_memory")
	}
	b, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("redis used_memory %q: %w", v, err)
	}
	return b / (1 << 20), nil
}

// scaleTruncate caches scaleItemKeys keys of scale_items, truncates it and
// returns the seconds from COMMIT to the last of them deleted.
func (s *suite) scaleTruncate(ctx context.Context, label string) (float64, error) {
	var secs float64
	_, err := s.withDaemon(ctx, "scale-truncate-"+label, nil, func(d *daemon, m *meter) error {
		baseline, err := s.otherKeys(ctx)
		if err != nil {
			return err
		}
		args := make([]any, 0, 2*scaleItemKeys)
		for i := range scaleItemKeys {
			args = append(args, fmt.Sprintf("tenant:t%d:item:%d", i%tenants, i), "cached")
		}
		if err := s.srv.rdb.MSet(ctx, args...).Err(); err != nil {
			return fmt.Errorf("redis mset: %w", err)
		}
		if err := m.start(); err != nil {
			return err
		}
		s.log.printf("scale %s: TRUNCATE scale_items", label)
		if _, err := query(ctx, s.srv.dbURL, "TRUNCATE scale_items"); err != nil {
			return err
		}
		secs, err = s.waitKeysGone(ctx, d, time.Now(), baseline)
		return err
	})
	return secs, err
}

// scaleStreamed runs a transaction that PostgreSQL streams (the daemon's
// walsender gets logical_decoding_work_mem=64kB) and that goes past a key
// bound of streamedMaxKeys.
func (s *suite) scaleStreamed(ctx context.Context, label string, r *scaleResult) error {
	// %20, not url.Values' '+': libpq-style URLs take only percent-escapes
	dbURL := s.srv.dbURL + "&options=-c%20logical_decoding_work_mem%3D64kB"
	env := []string{"INVALIDATOR_POSTGRES_URL=" + dbURL, fmt.Sprintf("INVALIDATOR_MAX_KEYS_PER_TXN=%d", streamedMaxKeys)}
	r.StreamedRows = streamedPerTenant * tenants
	_, err := s.withDaemon(ctx, "scale-streamed-"+label, env, func(d *daemon, m *meter) error {
		baseline, err := s.otherKeys(ctx)
		if err != nil {
			return err
		}
		if err := s.preload(ctx, streamedPerTenant); err != nil {
			return err
		}
		if _, err := query(ctx, s.srv.dbURL, fmt.Sprintf("SELECT pg_stat_reset_replication_slot('%s')", daemonSlot)); err != nil {
			return err
		}
		conn, err := pgconn.Connect(ctx, s.srv.dbURL)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if err := m.start(); err != nil {
			return err
		}
		s.log.printf("scale %s: streamed UPDATE of %d rows", label, r.StreamedRows)
		_, _, committed, err := bulkUpdate(ctx, conn, streamedPerTenant)
		if err != nil {
			return err
		}
		if r.StreamedSeconds, err = s.waitKeysGone(ctx, d, committed, baseline); err != nil {
			return err
		}
		r.StreamedSlot, err = s.readSlotStats(ctx, daemonSlot)
		return err
	})
	return err
}

// waitKeysGone polls Redis every 2 ms until it holds no more keys than
// baseline, and returns the seconds since committed.
func (s *suite) waitKeysGone(ctx context.Context, d *daemon, committed time.Time, baseline int64) (float64, error) {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := committed.Add(scaleTimeout)
	for polls := 0; ; polls++ {
		n, err := s.otherKeys(ctx)
		if err != nil {
			return 0, err
		}
		if n <= baseline {
			return time.Since(committed).Seconds(), nil
		}
		if polls%500 == 0 {
			if err := d.alive(); err != nil {
				return 0, err
			}
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case now := <-tick.C:
			if now.After(deadline) {
				return 0, fmt.Errorf("%d keys left %s after COMMIT", n-baseline, scaleTimeout)
			}
		}
	}
}
