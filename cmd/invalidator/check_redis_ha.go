package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/config"
)

// checkSentinel reports the master each sentinel names: ok when a majority
// answer and agree, a warning otherwise (a failover in progress, or
// sentinels that cannot reach a quorum).
func checkSentinel(ctx context.Context, cfg *config.Config, r *report) {
	sn := sentinelOf(cfg)
	if sn == nil {
		return
	}
	var d net.Dialer
	named := map[string]int{}
	var failed []string
	for _, addr := range sn.Addrs {
		master, err := sn.Ask(ctx, d.DialContext, addr)
		if err != nil {
			failed = append(failed, addr)
			continue
		}
		named[master]++
	}
	answered := len(sn.Addrs) - len(failed)
	var masters []string
	for m, n := range named {
		masters = append(masters, fmt.Sprintf("%s (%d)", m, n))
	}
	msg := fmt.Sprintf("master %q: %s, named by %d of %d sentinels", sn.Master, strings.Join(masters, ", "), answered, len(sn.Addrs))
	if len(failed) > 0 {
		msg += "; no answer from " + strings.Join(failed, ", ")
	}
	switch {
	case answered == 0:
		r.add("problem", "redis sentinel", msg, "check "+config.Var("REDIS_SENTINEL_ADDRS")+" and "+config.Var("REDIS_SENTINEL_MASTER")+" (the name of sentinel monitor)")
	case len(named) > 1 || answered <= len(sn.Addrs)/2:
		r.add("warn", "redis sentinel", msg, "the sentinels disagree or a majority does not answer: a failover may be under way, or they cannot reach a quorum")
	default:
		r.add("ok", "redis sentinel", msg, "")
	}
}

// checkReplicas counts the replicas online on each master when
// INVALIDATOR_REDIS_MIN_REPLICAS is set, and warns for a master with fewer:
// the daemon stalls (retrying, confirming nothing) while it is so.
func checkReplicas(ctx context.Context, cfg *config.Config, rdb redis.UniversalClient, r *report) {
	if cfg.RedisMinReplicas <= 0 {
		return
	}
	var lines []string
	short := 0
	count := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("INFO replication: %w", err)
		}
		online := 0
		for _, l := range strings.Split(info, "\n") {
			if strings.HasPrefix(l, "slave") && strings.Contains(l, "state=online") {
				online++
			}
		}
		if online < cfg.RedisMinReplicas {
			short++
		}
		lines = append(lines, fmt.Sprintf("%d online", online))
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var err error
	switch c := rdb.(type) {
	case *redis.Client:
		err = count(cctx, c)
	case *redis.ClusterClient:
		var mu sync.Mutex
		var masters []*redis.Client
		err = c.ForEachMaster(cctx, func(_ context.Context, m *redis.Client) error {
			mu.Lock() // ForEachMaster calls this concurrently
			masters = append(masters, m)
			mu.Unlock()
			return nil
		})
		for _, m := range masters {
			if err == nil {
				err = count(cctx, m)
			}
		}
	}
	if err != nil {
		r.add("problem", "redis replicas", "cannot count the replicas: "+oneLine(redactErr(err, cfg)), "")
		return
	}
	msg := fmt.Sprintf("%s=%d; replicas per master: %s", config.Var("REDIS_MIN_REPLICAS"), cfg.RedisMinReplicas, strings.Join(lines, ", "))
	if short > 0 {
		r.add("warn", "redis replicas", fmt.Sprintf("%s; %d master(s) have fewer: invalidation stalls (retrying, confirming nothing) until they have enough", msg, short),
			"start or reattach the replicas, or lower "+config.Var("REDIS_MIN_REPLICAS"))
		return
	}
	r.add("ok", "redis replicas", msg, "")
}
