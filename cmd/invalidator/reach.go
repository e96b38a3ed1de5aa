package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/config"
)

// quietLibrary is go-redis's logger for the one-shot commands: it drops
// the library's lines. go-redis reports pool events (a dial that failed,
// a cluster reload) through one logger for the whole process, not one per
// client, so that choice is made once per command, in Main, before any
// client exists; no other package sets it. The one-shot commands say
// themselves what failed and what to check, in one line (reachPostgres,
// reachRedis), where the library would print a raw line per dial attempt;
// run replaces this with its zap logger (redisLogger).
type quietLibrary struct{}

func (quietLibrary) Printf(context.Context, string, ...any) {}

// unreachable is a server a one-shot command could not reach, said in
// one line with what to check.
type unreachable struct {
	server, variable, check string
	err                     error
	cfg                     *config.Config
}

func (u *unreachable) Error() string {
	return fmt.Sprintf("cannot reach %s: %s; check %s (--%s) and that %s",
		u.server, oneLine(redactErr(u.err, u.cfg)), u.variable, config.FlagName(u.variable), u.check)
}

func (u *unreachable) Unwrap() error { return u.err }

// reachPostgres connects to PostgreSQL for a one-shot command.
func reachPostgres(ctx context.Context, cfg *config.Config) (*pgconn.PgConn, error) {
	conn, err := pgconn.Connect(ctx, cfg.PostgresURL)
	if err != nil {
		return nil, &unreachable{server: "PostgreSQL", variable: config.Var("POSTGRES_URL"),
			check: "the server accepts connections from here", err: err, cfg: cfg}
	}
	return conn, nil
}

// reachRedis returns a client that answered a PING, for a one-shot
// command. A bad setting is a *config.Error; an unreachable Redis is an
// *unreachable.
func reachRedis(ctx context.Context, cfg *config.Config) (redis.UniversalClient, error) {
	rdb, err := newRedis(cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		variable := config.Var("REDIS_URL")
		if len(cfg.RedisClusterAddrs) > 0 {
			variable = config.Var("REDIS_CLUSTER_ADDRS")
		}
		if len(cfg.RedisSentinelAddrs) > 0 {
			variable = config.Var("REDIS_SENTINEL_ADDRS")
		}
		return nil, &unreachable{server: "Redis", variable: variable, check: "Redis is running", err: err, cfg: cfg}
	}
	return rdb, nil
}

// oneLine joins the lines of a message (pgconn puts each address it tried
// on a line of its own), dropping repeated ones.
func oneLine(msg string) string {
	var parts []string
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && (len(parts) == 0 || parts[len(parts)-1] != l) {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " ")
}
