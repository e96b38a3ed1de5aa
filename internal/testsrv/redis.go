package testsrv

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// redisBin is where Debian's redis-server package installs the binary;
// $PATH is searched if it is not there.
const redisBin = "/usr/bin/redis-server"

// Redis is a throwaway redis-server listening on 127.0.0.1 only, without
// password or protected mode (NewRedisWith adds TLS, ACL users and cluster
// mode), run as the current user with no configuration file. Every write is appended to an append-only file in its private
// temporary directory and fsynced before the reply (appendonly yes,
// appendfsync always; RDB snapshots are off), so data survives Stop and
// Start. Close removes the directory.
//
// Addr, URL and Client may be used from parallel tests; Stop, Start and Close
// must not race with each other.
type Redis struct {
	// Port is the TCP port on 127.0.0.1 the server listens on. It stays the
	// same across Stop and Start. Treat it as read-only.
	Port int
	// BusPort is the cluster bus port on 127.0.0.1 when the server was
	// started with RedisOptions.Cluster, 0 otherwise. Treat it as read-only.
	BusPort int

	opts    RedisOptions
	dir     string // base temporary directory, removed by Close
	dataDir string
	proc    *process

	closeOnce sync.Once
	closeErr  error
}

// NewRedis starts a redis-server on a free port in a fresh temporary
// directory and returns once it answers PING. It is meant for TestMain; the
// caller must call Close. On error nothing is left behind.
func NewRedis() (*Redis, error) {
	return NewRedisWith(RedisOptions{})
}

// NewRedisWith is NewRedis with options (TLS, ACL users, cluster mode,
// extra arguments); the zero RedisOptions gives NewRedis's server.
func NewRedisWith(opts RedisOptions) (*Redis, error) {
	bin, err := findBinary("redis-server", redisBin)
	if err != nil {
		return nil, fmt.Errorf("redis server binary (install the redis-server package): %w", err)
	}
	dir, err := os.MkdirTemp("", "invalidator-redis-*")
	if err != nil {
		return nil, fmt.Errorf("create redis temp dir: %w", err)
	}
	r := &Redis{opts: opts, dir: dir, dataDir: filepath.Join(dir, "data")}
	r.proc = &process{
		name:    "redis-server",
		path:    bin,
		dir:     dir,
		logPath: filepath.Join(dir, "redis.log"),
		env:     cleanEnv(),
	}
	if err := os.Mkdir(r.dataDir, 0o700); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("create redis data dir: %w", err)
	}
	err = r.proc.firstStart("redis", func() error {
		var err error
		if r.Port, err = FreePort(); err != nil {
			return err
		}
		if r.BusPort, err = r.freeBusPort(); err != nil {
			return err
		}
		return r.start()
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return r, nil
}

// StartRedis is NewRedis for a single test: it fails the test with tb.Fatal
// if the server cannot be started and registers Close with tb.Cleanup,
// reporting a failed Close with tb.Error.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	r, err := NewRedis()
	return forTest(tb, r, err)
}

// args are redis-server's command-line arguments. With no configuration
// file as first argument, redis-server reads none.
func (r *Redis) args() []string {
	return append(r.baseArgs(), r.optionArgs()...)
}

func (r *Redis) baseArgs() []string {
	return []string{
		"--port", strconv.Itoa(r.Port),
		"--bind", "127.0.0.1",
		"--protected-mode", "no",
		"--daemonize", "no",
		"--unixsocket", "",
		"--logfile", "",
		"--dir", r.dataDir,
		"--save", "",
		"--appendonly", "yes",
		"--appendfsync", "always",
	}
}

// start runs redis-server and waits until it answers PING (which it does
// only after loading the append-only file).
func (r *Redis) start() error {
	if err := r.proc.start(r.args()); err != nil {
		return err
	}
	return r.proc.waitReady(readyTimeout, func(ctx context.Context) error {
		// A plain dial first: go-redis logs every failed dial.
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", r.Addr())
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		_ = conn.Close()
		o := r.clientOptions()
		o.MaxRetries, o.DialerRetries = -1, 1
		c := redis.NewClient(o)
		defer c.Close()
		if err := c.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("ping: %w", err)
		}
		return nil
	})
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (r *Redis) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
}

// URL returns the URL of database 0, "redis://127.0.0.1:PORT/0", or
// "rediss://127.0.0.1:PORT/0" when the server was started with TLS. It
// carries no credentials.
func (r *Redis) URL() string {
	if r.opts.TLS != nil {
		return "rediss://" + r.Addr() + "/0"
	}
	return "redis://" + r.Addr() + "/0"
}

// LogPath returns the path of the server log file (the output of every run,
// each preceded by a "=== testsrv:" line). Close removes it.
func (r *Redis) LogPath() string {
	return r.proc.logPath
}

// Client returns a new go-redis client for database 0 of this server (with
// the TLS configuration and credentials of RedisOptions, if any). It is
// closed by tb.Cleanup. After Stop and Start the client reconnects by itself;
// commands sent while the server is stopped fail.
func (r *Redis) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(r.clientOptions())
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop shuts the server down with SIGTERM, which flushes the append-only
// file, and returns when the process is gone. Every acknowledged write
// survives a later Start. It fails the test if the server is not running or
// does not exit in time (it is then killed).
func (r *Redis) Stop(tb testing.TB) {
	tb.Helper()
	r.proc.stopForTest(tb, "redis", syscall.SIGTERM)
}

// Start starts the server again after Stop, on the same port with the same
// data, and returns when it answers PING. It fails the test, with the log's
// tail, if the server is already running or does not become ready.
func (r *Redis) Start(tb testing.TB) {
	tb.Helper()
	if err := r.start(); err != nil {
		tb.Fatalf("testsrv: start redis: %v", err)
	}
}

// Close stops the server (SIGTERM; SIGKILL after 10 s, which is not an error)
// and removes its directory. It returns only when the process is gone. It may
// be called more than once and whether or not the server is running; later
// calls return the first call's result.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.closeErr = r.proc.closeAndRemove("redis", syscall.SIGTERM, r.dir)
	})
	return r.closeErr
}
