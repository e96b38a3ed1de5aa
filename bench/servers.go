package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/benchrules"
	"github.com/cachewire/invalidator/internal/testsrv"
)

const (
	benchDB = "bench"
	// tenants: rows are (t0..t99, 1..rows/100)
	tenants = 100
	// floorPublication is pg_recvlogical's publication (the daemon creates
	// its own, daemonPublication).
	floorPublication  = "bench_floor"
	daemonSlot        = "invalidator_bench"
	daemonPublication = "invalidator_bench"
	channelPrefix     = "cache:invalidate:"
)

// shardKey is the key the rule renders for a row.
func shardKey(tenant, id int) string {
	return fmt.Sprintf("tenant:t%d:shard:%d:structured", tenant, id)
}

// servers are the PostgreSQL and Redis the suite runs against.
type servers struct {
	pg    *testsrv.Postgres
	redis *testsrv.Redis
	rdb   *redis.Client
	// redisPID is redis-server's process id, for its CPU time
	redisPID int
	dbURL    string
	rules    string
	info     serversInfo
	// systemID is PostgreSQL's system identifier, part of the name of
	// the daemon's slot marker
	systemID string
}

// serversInfo is what the report says about the servers.
type serversInfo struct {
	Postgres        string `json:"postgres"`
	PostgresConfig  string `json:"postgres_config"`
	DecodingWorkMem string `json:"logical_decoding_work_mem"`
	Redis           string `json:"redis"`
	RedisConfig     string `json:"redis_config"`
	Rows            int    `json:"table_rows"`
}

// startServers starts PostgreSQL and Redis, creates the bench database
// with hugeRows rows in shards, and writes the rules file.
func startServers(ctx context.Context, dir string, o options) (_ *servers, err error) {
	s := &servers{rules: filepath.Join(dir, "rules.yaml")}
	defer func() {
		if err != nil {
			s.close(nil)
		}
	}()
	if err := os.WriteFile(s.rules, []byte(benchrules.YAML), 0o644); err != nil {
		return nil, fmt.Errorf("write rules: %w", err)
	}
	if s.pg, err = testsrv.NewPostgres(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	// DEBUG POPULATE fills the keyspace for the scale workload
	if s.redis, err = testsrv.NewRedisWith(testsrv.RedisOptions{Args: []string{"--enable-debug-command", "local"}}); err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redis.Addr(), DisableIdentity: true, PoolSize: 4})
	if err := s.setupPostgres(ctx, o); err != nil {
		return nil, err
	}
	if err := s.setupRedis(ctx, o.appendfsync); err != nil {
		return nil, err
	}
	s.info.Rows = o.hugeRows
	return s, nil
}

func (s *servers) setupPostgres(ctx context.Context, o options) error {
	admin := s.pg.URL("postgres")
	if _, err := query(ctx, admin, "CREATE DATABASE "+benchDB); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	// A per-database setting overrides the server's command line (-c
	// logical_decoding_work_mem=64kB) for every session of the database,
	// walsenders included.
	if _, err := query(ctx, admin, fmt.Sprintf("ALTER DATABASE %s SET logical_decoding_work_mem = '%s'", benchDB, o.workMem)); err != nil {
		return fmt.Errorf("set logical_decoding_work_mem: %w", err)
	}
	s.dbURL = s.pg.URL(benchDB)
	id, err := queryValue(ctx, s.dbURL, "SELECT system_identifier FROM pg_control_system()")
	if err != nil {
		return fmt.Errorf("system identifier: %w", err)
	}
	s.systemID = id
	load := fmt.Sprintf(`
CREATE TABLE shards(tenant_id text NOT NULL, id int NOT NULL, payload text, PRIMARY KEY (tenant_id, id))
  WITH (autovacuum_enabled = off, toast.autovacuum_enabled = off); -- the suite vacuums between workloads
INSERT INTO shards SELECT 't' || t, i, md5((t * 10000000 + i)::text)
  FROM generate_series(0, %d) t, generate_series(1, %d) i;
CREATE TABLE scale_items(tenant_id text NOT NULL, id int NOT NULL, PRIMARY KEY (tenant_id, id)); -- truncated by the scale workload
CREATE PUBLICATION %s FOR TABLE shards;`, tenants-1, o.hugeRows/tenants, floorPublication)
	if _, err := query(ctx, s.dbURL, load); err != nil {
		return fmt.Errorf("load shards: %w", err)
	}
	if err := s.settle(ctx); err != nil {
		return err
	}
	// what a replication connection (the daemon's, pg_recvlogical's) gets
	mem, err := queryValue(ctx, s.dbURL+"&replication=database", "SHOW logical_decoding_work_mem")
	if err != nil {
		return fmt.Errorf("check logical_decoding_work_mem of walsenders: %w", err)
	}
	s.info.DecodingWorkMem = mem
	rows, err := query(ctx, s.dbURL, `SELECT current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit'), current_setting('full_page_writes'), current_setting('shared_buffers')`)
	if err != nil || len(rows) != 1 {
		return fmt.Errorf("postgres settings: %w", err)
	}
	r := rows[0]
	s.info.Postgres = "PostgreSQL " + strings.Fields(r[0])[0]
	s.info.PostgresConfig = fmt.Sprintf("fsync=%s synchronous_commit=%s full_page_writes=%s shared_buffers=%s", r[1], r[2], r[3], r[4])
	return nil
}

// settle vacuums the table and checkpoints, so that every workload starts
// from the same state: a bulk run leaves up to a million dead rows, and an
// autovacuum of them (or a checkpoint) in the middle of the next workload
// would take the CPU its figures are about.
func (s *servers) settle(ctx context.Context) error {
	for _, sql := range []string{"VACUUM ANALYZE shards", "CHECKPOINT"} {
		if _, err := query(ctx, s.dbURL, sql); err != nil {
			return fmt.Errorf("settle: %w", err)
		}
	}
	return nil
}

func (s *servers) setupRedis(ctx context.Context, appendfsync string) error {
	// A subscriber that falls behind during a 200,000-message burst must not
	// be disconnected (the default pubsub limit is 32mb).
	if err := s.rdb.ConfigSet(ctx, "client-output-buffer-limit", "pubsub 0 0 0").Err(); err != nil {
		return fmt.Errorf("redis config set: %w", err)
	}
	// Persistence: the test server appends and fsyncs every write; a cache
	// in front of a database usually runs without (-redis-appendfsync off).
	settings := [][2]string{{"appendonly", "no"}}
	if appendfsync != "off" {
		settings = [][2]string{{"appendonly", "yes"}, {"appendfsync", appendfsync}}
	}
	for _, kv := range settings {
		if err := s.rdb.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			return fmt.Errorf("redis config set %s %s: %w", kv[0], kv[1], err)
		}
	}
	info, err := s.rdb.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("redis info: %w", err)
	}
	if v, ok := infoField(info, "redis_version"); ok {
		s.info.Redis = "Redis " + v
	}
	if v, ok := infoField(info, "process_id"); ok {
		if s.redisPID, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("redis process_id %q: %w", v, err)
		}
	}
	cfg, err := s.rdb.ConfigGet(ctx, "append*").Result()
	if err != nil {
		return fmt.Errorf("redis config get: %w", err)
	}
	if s.redisPID == 0 {
		return fmt.Errorf("redis info has no process_id")
	}
	s.info.RedisConfig = fmt.Sprintf("appendonly=%s appendfsync=%s", cfg["appendonly"], cfg["appendfsync"])
	return nil
}

// close stops both servers (each Close is bounded); lg may be nil.
func (s *servers) close(lg *progress) {
	if s.rdb != nil {
		_ = s.rdb.Close()
	}
	if s.redis != nil {
		if err := s.redis.Close(); err != nil && lg != nil {
			lg.printf("close redis: %v", err)
		}
	}
	if s.pg != nil {
		if err := s.pg.Close(); err != nil && lg != nil {
			lg.printf("close postgres: %v", err)
		}
	}
}

// infoField is the value of name in an INFO reply.
func infoField(info, name string) (string, bool) {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v, true
		}
	}
	return "", false
}
