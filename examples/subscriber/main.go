// Command subscriber is an example application instance: it keeps an
// in-process LRU cache of Redis string values, evicts from it what the
// invalidator daemon publishes, drops it whole when messages may have been
// missed, and logs every eviction.
//
//	INVALIDATOR_REDIS_URL=redis://localhost:6379/0 go run ./examples/subscriber -warm 'tenant:*'
//
// Flags override the environment. It stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/examples/subscriber/warm"
	"github.com/cachewire/invalidator/subscriber"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command line, after the environment.
type options struct {
	redisURL         string
	channelPrefix    string
	heartbeatTimeout time.Duration
	cacheSize        int
	warm             string
	warmInterval     time.Duration
}

// run is the program; it returns the exit status: 0 after a signal, 1 on a
// runtime failure, 2 on bad usage.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("subscriber", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.redisURL, "redis-url", "", "Redis URL, redis:// or rediss:// (default $INVALIDATOR_REDIS_URL)")
	fs.StringVar(&o.channelPrefix, "channel-prefix", subscriber.DefaultChannelPrefix, "the daemon's channel_prefix")
	fs.DurationVar(&o.heartbeatTimeout, "heartbeat-timeout", subscriber.DefaultHeartbeatTimeout, "drop the cache after this long without a heartbeat; 0 = off")
	fs.IntVar(&o.cacheSize, "cache-size", 10_000, "entries the local cache holds")
	fs.StringVar(&o.warm, "warm", "", "Redis glob pattern of string keys to load into the cache periodically, to have something to evict; empty = off")
	fs.DurationVar(&o.warmInterval, "warm-interval", 5*time.Second, "how often -warm loads keys")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if o.redisURL == "" {
		// Not the flag's default: -help would print the password.
		o.redisURL = getenv("INVALIDATOR_REDIS_URL")
	}
	if o.redisURL == "" {
		fmt.Fprintln(stderr, "subscriber: INVALIDATOR_REDIS_URL or -redis-url is required")
		return 2
	}
	if o.cacheSize < 1 {
		fmt.Fprintln(stderr, "subscriber: -cache-size must be at least 1")
		return 2
	}
	redisOpts, err := redis.ParseURL(o.redisURL)
	if err != nil {
		// The URL may hold a password: do not echo it.
		fmt.Fprintln(stderr, "subscriber: invalid INVALIDATOR_REDIS_URL / -redis-url")
		return 2
	}

	log, err := zap.NewProduction()
	if err != nil {
		fmt.Fprintf(stderr, "subscriber: logger: %v\n", err)
		return 1
	}
	defer func() { _ = log.Sync() }()

	rdb := redis.NewClient(redisOpts)
	defer func() { _ = rdb.Close() }()

	if err := serve(ctx, o, rdb, log); err != nil {
		log.Error("stopped", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// serve runs the subscriber and, with -warm, the cache loader until ctx is
// done or the subscriber fails.
func serve(ctx context.Context, o options, rdb *redis.Client, log *zap.Logger) error {
	cache := subscriber.NewCache(o.cacheSize)
	heartbeatTimeout := o.heartbeatTimeout
	if heartbeatTimeout == 0 {
		heartbeatTimeout = -1 // the flag's 0 means off
	}
	sub, err := subscriber.New(subscriber.Config{
		Client:           rdb,
		ChannelPrefix:    o.channelPrefix,
		HeartbeatTimeout: heartbeatTimeout,
		OnMessage: func(m subscriber.Message) {
			n := cache.Invalidate(m)
			log.Info("invalidation",
				zap.String("channel", m.Channel), zap.String("op", m.Op), zap.String("table", m.Table),
				zap.Strings("keys", m.Keys), zap.Strings("patterns", m.Patterns), zap.Strings("namespaces", m.Namespaces),
				zap.String("lsn", m.LSN), zap.Int("evicted", n), zap.Int("cached", cache.Len()))
		},
		OnResync: func(reason string) {
			n := cache.Len()
			cache.Resync(reason)
			log.Warn("dropped the whole local cache", zap.String("reason", reason), zap.Int("evicted", n))
		},
		Logger: log.Named("subscriber"),
	})
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	log.Info("starting", zap.String("redis", rdb.Options().Addr), zap.String("channel_prefix", o.channelPrefix))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if o.warm != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			warm.Loop(ctx, rdb, cache, o.warm, o.cacheSize, o.warmInterval, log.Named("warm"))
		}()
	}
	err = sub.Run(ctx)
	cancel()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("subscriber: %w", err)
	}
	return nil
}
