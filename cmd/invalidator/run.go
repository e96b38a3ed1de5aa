package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/internal/backoff"
	"github.com/cachewire/invalidator/internal/resp"
	"github.com/cachewire/invalidator/internal/sockio"
	"github.com/cachewire/invalidator/ops"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

const runHelp = `invalidator run

Runs the daemon: streams committed changes from the replication slot,
deletes the keys the rules render, publishes one message per entity, and
confirms each position to PostgreSQL once Redis has acknowledged it.
SIGTERM or SIGINT drains what is in flight, confirms it and exits 0.`

// queueLen bounds the committed transactions waiting for Redis; the stream
// blocks when it is full (backpressure reaches PostgreSQL, not memory).
const queueLen = 256

// defaultProcs runs Go code on one thread at a time unless GOMAXPROCS is
// set (ADR 12): the daemon's work is one reader and one applier, fed by
// one single-threaded walsender, and a second P mostly adds wake-ups, CPU
// taken from PostgreSQL on a shared machine. It returns the setting.
func defaultProcs() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(1)
	return 1
}

// defaultGCPercent is the garbage collector's target unless GOGC is set
// (ADR 31): the daemon's live heap is a few MB, so collecting at twice
// Go's default growth costs a few MB of RSS and saves about 7 % of its
// CPU per change.
const defaultGCPercent = 200

// defaultGC sets the collector's target unless GOGC is set; it returns
// the setting.
func defaultGC() int {
	if os.Getenv("GOGC") != "" {
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	debug.SetGCPercent(defaultGCPercent)
	return defaultGCPercent
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s, code, done := load("run", runHelp, args, stdout, stderr, (*config.Config).BindRunFlags, (*config.Config).Validate)
	if done {
		return code
	}
	log, err := newLogger(s.cfg, stderr)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator run: %v\n", err)
		return exitUsage
	}
	defer func() { _ = log.Sync() }()
	// go-redis logs through a process-wide logger: route it into ours
	// (main owns the process, so this is the place to set it).
	redis.SetLogger(redisLogger{log.Named("redis")})
	procs, gc := defaultProcs(), defaultGC()
	log.Info("starting", zap.String("version", version()), zap.Any("config", s.cfg.Redacted()),
		zap.Int("rules", len(s.rules.Rules)), zap.Strings("tables", s.rules.Tables()), zap.Int("gomaxprocs", procs), zap.Int("gogc", gc))

	err = runDaemon(ctx, s.cfg, s.rules, log)
	var rerr *router.Error
	var ref *refusal
	var cerr *config.Error
	switch {
	case err == nil:
		log.Info("stopped")
		return exitOK
	case errors.As(err, &rerr):
		log.Error("rules do not match the database", zap.Error(err))
		_, _ = fmt.Fprintf(stderr, "invalidator run: %v\n", err)
		return exitUsage
	case errors.Is(err, cdc.ErrUnsupported):
		log.Error("the PostgreSQL server does not support this configuration", zap.Error(err))
		_, _ = fmt.Fprintf(stderr, "invalidator run: %v\n", err)
		return exitUsage
	case errors.As(err, &ref):
		log.Error("the database cannot be streamed as the rules need; nothing was changed", zap.Error(err))
		_, _ = fmt.Fprintf(stderr, "invalidator run: refusing to start:\n%v\n", err)
		return exitUsage
	case errors.As(err, &cerr) || permanent(err):
		log.Error("stopped on a configuration error", zap.Error(err))
		_, _ = fmt.Fprintf(stderr, "invalidator run: %s\n", redactErr(err, s.cfg))
		return exitUsage
	default:
		log.Error("stopped on error", zap.Error(err))
		return exitProblems
	}
}

// newRedis returns a client for the configured Redis or Redis Cluster.
func newRedis(cfg *config.Config) (redis.UniversalClient, error) {
	tlsConf, err := redisTLS(cfg)
	if err != nil {
		return nil, err
	}
	if len(cfg.RedisSentinelAddrs) > 0 {
		return newFailoverClient(cfg, tlsConf)
	}
	if len(cfg.RedisClusterAddrs) > 0 {
		opts := &redis.ClusterOptions{Addrs: cfg.RedisClusterAddrs}
		if cfg.RedisURL != "" {
			u, err := redis.ParseURL(cfg.RedisURL)
			if err != nil {
				return nil, &config.Error{Var: config.Var("REDIS_URL"), Msg: "invalid URL"}
			}
			opts.Username, opts.Password = u.Username, u.Password
			if u.TLSConfig != nil && tlsConf == nil {
				tlsConf = u.TLSConfig
			}
		}
		if tlsConf != nil || cfg.RedisClusterTLS {
			if tlsConf == nil {
				tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			opts.TLSConfig = tlsConf
		}
		// the cluster's connections are the per-batch path: raw socket
		// reads and writes (ADR 30); the dialer puts TLS on top itself
		opts.Dialer = sockio.Dialer(opts.DialTimeout, opts.TLSConfig)
		return redis.NewClusterClient(opts), nil
	}
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, &config.Error{Var: config.Var("REDIS_URL"), Msg: "invalid URL: " + err.Error()}
	}
	if opts.TLSConfig, err = urlTLS(opts.TLSConfig, tlsConf); err != nil {
		return nil, err
	}
	return redis.NewClient(opts), nil
}

// urlTLS is the TLS of a Redis reached through REDIS_URL: the URL's
// (rediss://), or the CA and client files' configuration in its place,
// with the URL's server name.
func urlTLS(fromURL, files *tls.Config) (*tls.Config, error) {
	if files == nil {
		return fromURL, nil
	}
	if fromURL == nil {
		return nil, &config.Error{Var: config.Var("REDIS_TLS_CA_FILE"), Msg: "TLS files need a rediss:// URL"}
	}
	files.ServerName = fromURL.ServerName
	return files, nil
}

// newFailoverClient returns go-redis's client of the master that the
// configured sentinels name (ADR 21); REDIS_URL, when set, gives the
// master's credentials, database and TLS.
func newFailoverClient(cfg *config.Config, tlsConf *tls.Config) (redis.UniversalClient, error) {
	opts := &redis.FailoverOptions{MasterName: cfg.RedisSentinelMaster, SentinelAddrs: cfg.RedisSentinelAddrs}
	if cfg.RedisURL != "" {
		u, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, &config.Error{Var: config.Var("REDIS_URL"), Msg: "invalid URL: " + err.Error()}
		}
		opts.Username, opts.Password, opts.DB, opts.TLSConfig = u.Username, u.Password, u.DB, u.TLSConfig
		opts.ReadTimeout, opts.WriteTimeout, opts.DialTimeout = u.ReadTimeout, u.WriteTimeout, u.DialTimeout
	}
	var err error
	if opts.TLSConfig, err = urlTLS(opts.TLSConfig, tlsConf); err != nil {
		return nil, err
	}
	return redis.NewFailoverClient(opts), nil
}

// publisherConfig is how every command that writes to Redis (run, replay)
// reaches it and publishes; run adds the journal.
func publisherConfig(cfg *config.Config, rules *router.Rules) publisher.Config {
	return publisher.Config{
		ChannelPrefix: rules.ChannelPrefix,
		Sharded:       cfg.RedisShardedPubSub,
		Sentinel:      sentinelOf(cfg),
		MinReplicas:   cfg.RedisMinReplicas,
		WaitTimeout:   cfg.RedisWaitTimeout,
	}
}

// sentinelOf is how the publisher's own connection finds the master, when
// Sentinel is configured.
func sentinelOf(cfg *config.Config) *resp.Sentinel {
	if len(cfg.RedisSentinelAddrs) == 0 {
		return nil
	}
	return &resp.Sentinel{Addrs: cfg.RedisSentinelAddrs, Master: cfg.RedisSentinelMaster}
}

// redisTLS builds the TLS configuration from the CA and client certificate
// files, or returns nil when none is set.
func redisTLS(cfg *config.Config) (*tls.Config, error) {
	if cfg.RedisTLSCAFile == "" && cfg.RedisTLSCertFile == "" {
		return nil, nil
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.RedisTLSCAFile != "" {
		pem, err := os.ReadFile(cfg.RedisTLSCAFile)
		if err != nil {
			return nil, &config.Error{Var: config.Var("REDIS_TLS_CA_FILE"), Msg: err.Error()}
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, &config.Error{Var: config.Var("REDIS_TLS_CA_FILE"), Msg: "no PEM certificate in " + cfg.RedisTLSCAFile}
		}
	}
	if cfg.RedisTLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.RedisTLSCertFile, cfg.RedisTLSKeyFile)
		if err != nil {
			return nil, &config.Error{Var: config.Var("REDIS_TLS_CERT_FILE"), Msg: err.Error()}
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// checkDatabase waits for PostgreSQL, then checks that every column the
// rules use exists (a mismatch is a *router.Error) and that the database
// can be streamed as the rules need without breaking the application's
// writes (a *refusal otherwise; warnings are logged). Errors retrying
// cannot mend (a wrong password, a missing database) are returned.
func checkDatabase(ctx context.Context, cfg *config.Config, rules *router.Rules, log *zap.Logger) error {
	b := backoff.Backoff{Min: 250 * time.Millisecond, Max: 15 * time.Second}
	for {
		err := func() error {
			conn, err := pgconn.Connect(ctx, cfg.PostgresURL)
			if err != nil {
				return err
			}
			defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
			if err := checkServer(conn, cfg); err != nil {
				return err
			}
			found, err := preflight(ctx, conn, cfg, rules)
			if err != nil {
				return err
			}
			for _, f := range found {
				if f.Status == "warn" || f.startable {
					log.Warn(f.Check+": "+f.Message, zap.String("fix", f.Fix))
				}
			}
			return refuse(found)
		}()
		var rerr *router.Error
		var ref *refusal
		if err == nil || errors.As(err, &rerr) || errors.As(err, &ref) || errors.Is(err, cdc.ErrUnsupported) {
			return err
		}
		if permanent(err) {
			return fmt.Errorf("PostgreSQL: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if !pauseAfter(ctx, &b, log, "cannot reach PostgreSQL to check the rules against the database; retrying", err) {
			return nil
		}
	}
}

// checkServer refuses a server older than cdc.MinServerMajor, and
// INVALIDATOR_SLOT_FAILOVER=true on one without failover slots: both wrap
// cdc.ErrUnsupported.
func checkServer(conn *pgconn.PgConn, cfg *config.Config) error {
	major, err := cdc.CheckServer(conn)
	if err != nil {
		return err
	}
	_, err = cdc.FailoverSlot(cfg.SlotFailover, major)
	return err
}

func firstRule(rules *router.Rules, table string) *router.Rule {
	for _, r := range rules.Rules {
		if r.Table == table {
			return r
		}
	}
	return rules.Rules[0]
}

// runDaemon runs every component until ctx ends or one fails, then stops
// them in order: the stream drains and confirms, the queue closes, the
// applier finishes, the HTTP server stops.
func runDaemon(ctx context.Context, cfg *config.Config, rules *router.Rules, log *zap.Logger) error {
	rdb, err := newRedis(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()
	metrics := ops.NewMetrics(log.Named("router"))

	// HTTP first: /healthz answers while PostgreSQL or Redis are still out
	// of reach, so an orchestrator does not restart a waiting daemon.
	httpCtx, stopHTTP := context.WithCancel(ctx)
	defer stopHTTP()
	streamCtx, stopStreaming := context.WithCancel(ctx)
	defer stopStreaming()
	httpDone := make(chan error, 1)
	if cfg.HTTPAddr != "" {
		srv := ops.NewServer(cfg.HTTPAddr, cfg.Slot, metrics, redisPinger{rdb}, log.Named("http"))
		if err := srv.Listen(); err != nil {
			return err
		}
		go func() {
			err := srv.Run(httpCtx)
			if err != nil {
				stopStreaming() // a daemon that cannot be watched stops (and drains)
			}
			httpDone <- err
		}()
	} else {
		close(httpDone)
	}
	err = startStreaming(streamCtx, cfg, rules, rdb, metrics, log)
	stopHTTP()
	if httpErr := <-httpDone; err == nil && httpErr != nil {
		err = httpErr
	}
	return err
}

// startStreaming checks the rules against the database, then runs the
// stream, the applier and the heartbeat until ctx ends or one fails.
func startStreaming(ctx context.Context, cfg *config.Config, rules *router.Rules, rdb redis.UniversalClient, metrics *ops.Metrics, log *zap.Logger) error {
	if err := checkDatabase(ctx, cfg, rules, log); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}
	m, err := readSlotMarkers(ctx, cfg, rules, rdb, log)
	if err != nil || ctx.Err() != nil {
		return err
	}

	rt := router.New(rules, cfg.MaxKeysPerTxn, metrics)
	bridge, closeNATS, err := natsBridge(ctx, cfg, rt, log.Named("nats"))
	defer closeNATS()
	if err != nil || ctx.Err() != nil {
		return err
	}
	queue := make(chan publisher.Applied, queueLen)
	stream := newStream(cfg, rules, rt, m.used, queue, metrics, log)
	pubCfg := publisherConfig(cfg, rules)
	pubCfg.Journal, pubCfg.JournalMaxLen, pubCfg.Server = cfg.Journal, cfg.JournalMaxLen, m.srv
	pub := publisher.New(rdb, pubCfg)
	defer func() { _ = pub.Close() }() // after the applier, resync and heartbeat below have stopped
	// its own connection authenticates as go-redis's does not (AUTH
	// <password>): a refusal shows now, not as retries of the first batch
	if err := untilReachable(ctx, log, "Redis", func() error { return pub.Connect(ctx) }); err != nil || ctx.Err() != nil {
		return err
	}
	applier := newApplier(cfg, pub, queue, stream, bridge, metrics, log)

	hb := &heartbeat{
		interval: cfg.HeartbeatInterval, pgURL: cfg.PostgresURL, slot: cfg.Slot, markerKey: m.key, legacyKey: m.legacyKey,
		stream: stream, pub: pub, nats: bridge, rdb: rdb, metrics: metrics, log: log.Named("heartbeat"),
	}
	// a rule table dropped and re-created leaves the publication (ADR 16)
	watch := &publicationWatch{
		interval: cfg.PublicationCheckInterval, pgURL: cfg.PostgresURL, publication: cfg.Publication, slot: cfg.Slot,
		tables: rules.Tables(), manage: cfg.CreateSlot, stream: stream, metrics: metrics, log: log.Named("publication"),
	}
	watch.Baseline(ctx)

	stopLog := context.AfterFunc(ctx, func() {
		log.Info("stopping: draining in-flight transactions", zap.Duration("bound", cfg.ShutdownTimeout))
	})
	defer stopLog()

	resync := func(ctx context.Context) error {
		return streamWithResync(ctx, stream, cfg, rt, publisher.New(rdb, pubCfg), log)
	}
	return daemonParts(log, cfg.ShutdownTimeout, hb, applier, queue, resync, watch).run(ctx)
}

// newApplier is the applier of the transactions stream hands to queue,
// writing them with pub and carrying their messages to bridge when set.
func newApplier(cfg *config.Config, pub *publisher.Publisher, queue <-chan publisher.Applied, stream *cdc.Stream[*router.Txn], bridge *publisher.NATSSink, metrics *ops.Metrics, log *zap.Logger) *publisher.Applier {
	applier := publisher.NewApplier(pub, queue, stream, metrics, log.Named("publisher"), publisher.ApplierConfig{
		MaxBatchTxns: cfg.BatchMaxTxns,
		MaxBatchKeys: cfg.BatchMaxKeys,
		Linger:       cfg.BatchLinger,
	})
	if bridge != nil {
		applier.Bridge = bridge
	}
	return applier
}

// daemonParts are the daemon's goroutines, started in this order and
// stopped in the reverse one: the publication watch, then the stream, then
// the applier once it has applied what the stream handed on (or grace
// passed), the heartbeat last.
func daemonParts(log *zap.Logger, grace time.Duration, hb *heartbeat, applier *publisher.Applier, queue chan publisher.Applied, stream func(context.Context) error, watch *publicationWatch) *lifecycle {
	parts := &lifecycle{log: log}
	parts.add(&part{name: "heartbeat", run: hb.Run, background: true})
	parts.add(&part{
		name: "applier",
		run: func(ctx context.Context) error {
			if err := applier.Run(ctx); err != nil {
				return fmt.Errorf("applier stopped: %w", err)
			}
			return nil
		},
		// it outlives ctx: it must finish what the stream handed on
		detached: true,
		drain:    func() { close(queue) },
		grace:    grace,
	})
	parts.add(&part{name: "stream", run: stream})
	parts.add(&part{name: "publication watch", run: watch.Run})
	return parts
}

// newStream is the replication stream of the rules' tables, handing each
// committed transaction to queue.
func newStream(cfg *config.Config, rules *router.Rules, rt *router.Router, expectSlot bool, queue chan<- publisher.Applied, metrics *ops.Metrics, log *zap.Logger) *cdc.Stream[*router.Txn] {
	stream := cdc.NewStream(cdc.StreamConfig{
		URL:          cfg.PostgresURL,
		Slot:         cfg.Slot,
		Publication:  cfg.Publication,
		Create:       cfg.CreateSlot,
		Tables:       rules.Tables(),
		SlotFailover: cfg.SlotFailover,
		DrainTimeout: cfg.ShutdownTimeout,
		ExpectSlot:   expectSlot,
	}, log.Named("cdc"), metrics, rt.NewTxn, queue)
	stream.OnMessage = onProbe(cfg.Slot, metrics)
	// a large transaction's keys are deleted while the rest of it arrives (ADR 14)
	stream.Early = (*router.Txn).Early
	// a table added back to the publication: its rules are flushed in the
	// stream, in WAL order (ADR 16)
	stream.Flush = (*router.Txn).FlushTables
	return stream
}

// slotMarkers is what the daemon knows of its slot before it streams: the
// server it serves, the Redis keys that mark the slot as used, and whether
// either is set (then a missing slot was lost, not never made).
type slotMarkers struct {
	srv            cdc.Server
	key, legacyKey string
	used           bool
}

// readSlotMarkers waits for PostgreSQL and then Redis to read the slot
// markers; on an ended ctx it returns what it has and no error.
func readSlotMarkers(ctx context.Context, cfg *config.Config, rules *router.Rules, rdb redis.UniversalClient, log *zap.Logger) (slotMarkers, error) {
	var m slotMarkers
	var err error
	if m.srv, err = serverOf(ctx, cfg, log); err != nil || ctx.Err() != nil {
		return m, err
	}
	m.key, m.legacyKey = slotMarkerKey(rules.ChannelPrefix, m.srv, cfg.Slot), legacySlotMarkerKey(rules.ChannelPrefix, cfg.Slot)
	m.used, err = slotWasUsed(ctx, rdb, log, m.key, m.legacyKey)
	return m, err
}

// slotWasUsed reads the slot markers (this server's and an older version's),
// waiting for Redis if it is down: the answer decides whether a missing slot
// is new or lost.
func slotWasUsed(ctx context.Context, rdb redis.UniversalClient, log *zap.Logger, keys ...string) (bool, error) {
	var used bool
	err := untilReachable(ctx, log, "Redis", func() error {
		used = false
		for _, k := range keys { // one by one: on a Redis Cluster they may lie in different slots
			n, err := rdb.Exists(ctx, k).Result()
			if err != nil {
				return err
			}
			used = used || n > 0
		}
		return nil
	})
	return used, err
}

// serverOf reads the system identifier and database the daemon serves,
// waiting for PostgreSQL if it is down.
func serverOf(ctx context.Context, cfg *config.Config, log *zap.Logger) (cdc.Server, error) {
	var srv cdc.Server
	err := untilReachable(ctx, log, "PostgreSQL", func() error {
		conn, err := pgconn.Connect(ctx, cfg.PostgresURL)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
		srv, err = cdc.ServerOf(ctx, conn)
		return err
	})
	return srv, err
}

// untilReachable calls try until it succeeds, ctx ends (nil) or it fails
// in a way retrying cannot mend (a wrong password, a database the server
// does not have: the error), with a growing pause between attempts.
func untilReachable(ctx context.Context, log *zap.Logger, what string, try func() error) error {
	b := backoff.Backoff{Min: 250 * time.Millisecond, Max: 15 * time.Second}
	for {
		err := try()
		if err == nil {
			return nil
		}
		if permanent(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if !pauseAfter(ctx, &b, log, "cannot reach "+what+"; waiting before streaming", err) {
			return nil
		}
	}
}

// pauseAfter logs a failed attempt and sleeps b's next pause; it returns
// false when ctx ended meanwhile.
func pauseAfter(ctx context.Context, b *backoff.Backoff, log *zap.Logger, msg string, err error) bool {
	pause := b.Next()
	log.Warn(msg, zap.Error(err), zap.Duration("backoff", pause))
	return backoff.Sleep(ctx, pause) == nil
}

// streamWithResync runs the stream; when the slot was lost it either stops
// with instructions (fail) or recreates the slot, flushes every rule's wide
// form and streams again (resync). pub is its own, for the flush, not the
// applier's: early parts of a transaction cut off by the loss (ADR 14) may
// still be applied meanwhile. It is closed on return.
func streamWithResync(ctx context.Context, stream *cdc.Stream[*router.Txn], cfg *config.Config, rt *router.Router, pub *publisher.Publisher, log *zap.Logger) error {
	defer func() { _ = pub.Close() }()
	for {
		err := stream.Run(ctx)
		if !errors.Is(err, cdc.ErrSlotLost) {
			return err
		}
		if cfg.OnSlotLost != "resync" {
			log.Error("the replication slot was lost: invalidations since it was last read may have been missed. "+
				"Restart with INVALIDATOR_ON_SLOT_LOST=resync to recreate it and flush every rule's wide form, "+
				"or recreate it with `invalidator setup` and flush what matters with `invalidator replay --tenant`.",
				zap.Error(err), zap.String("slot", cfg.Slot))
			return err
		}
		log.Warn("the replication slot was lost: recreating it and flushing every rule's wide form", zap.Error(err), zap.String("slot", cfg.Slot))
		// what was handed on is applied first, then the old positions are
		// dropped
		if err := stream.Rebase(ctx); err != nil {
			return nil
		}
		if err := resync(ctx, cfg, rt, pub, log); err != nil {
			return err
		}
	}
}

// resync recreates the slot first (so every change from now on is kept),
// then deletes everything any rule could have cached before it.
func resync(ctx context.Context, cfg *config.Config, rt *router.Router, pub *publisher.Publisher, log *zap.Logger) error {
	conn, err := pgconn.Connect(ctx, cfg.PostgresURL)
	if err != nil {
		return fmt.Errorf("resync: connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if err := cdc.DropSlot(ctx, conn, cfg.Slot); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	if _, _, err := cdc.EnsureSlotMode(ctx, conn, cfg.Slot, cfg.SlotFailover); err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	flush := rt.Wide(nil, cdc.OpTruncate)
	batch := []publisher.Applied{{Txn: rt.Finished(flush), CommitTime: time.Now()}}
	b := backoff.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	for {
		st, err := pub.Apply(ctx, batch)
		if err == nil {
			log.Info("resync flushed every rule's wide form", zap.Int("patterns", len(flush.Patterns)), zap.Int64("keys_deleted", st.KeysDeleted))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("resync: %w", ctx.Err())
		}
		log.Warn("resync flush failed; retrying", zap.Error(err))
		if err := b.Wait(ctx); err != nil {
			return fmt.Errorf("resync: %w", err)
		}
	}
}

// redisLogger adapts zap to go-redis's logger.
type redisLogger struct{ log *zap.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn(fmt.Sprintf(format, v...))
}

// redisPinger adapts a go-redis client to ops.Pinger.
type redisPinger struct{ c redis.UniversalClient }

func (p redisPinger) Ping(ctx context.Context) error { return p.c.Ping(ctx).Err() }
