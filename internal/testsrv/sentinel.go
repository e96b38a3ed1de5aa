package testsrv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name under which a RedisSentinel's sentinels
// monitor its master.
const SentinelMaster = "testmaster"

// sentinelCount and sentinelQuorum: three sentinels, two of which must
// agree that the master is down before one of them fails it over.
const (
	sentinelCount  = 3
	sentinelQuorum = 2
)

// RedisSentinel is one Redis master, its replicas and three Redis
// Sentinels monitoring it, all on 127.0.0.1. The sentinels consider a
// master down after 1 s without an answer and fail it over within a few
// seconds. Nodes are the Redis servers of NewRedisWith (append-only file,
// fsync always); the replicas also accept DEBUG from loopback.
//
// Its methods must not be called concurrently with Kill, Restart or Close.
type RedisSentinel struct {
	nodes     []*Redis // nodes[0] was the first master
	sentinels []*sentinel
	dir       string
}

// sentinel is one redis-sentinel process with its configuration file
// (which the sentinel rewrites as it learns the others and fails over).
type sentinel struct {
	port int
	proc *process
}

// StartRedisSentinel starts a master, replicas replicas of it and three
// sentinels, and returns once the replicas are in sync and every sentinel
// knows the others and every replica. Everything is stopped and removed
// with tb.Cleanup; it fails the test if anything cannot be started.
func StartRedisSentinel(tb testing.TB, replicas int) *RedisSentinel {
	tb.Helper()
	s, err := newRedisSentinel(replicas)
	return forTest(tb, s, err)
}

func newRedisSentinel(replicas int) (s *RedisSentinel, err error) {
	dir, err := os.MkdirTemp("", "invalidator-sentinel-*")
	if err != nil {
		return nil, fmt.Errorf("create sentinel temp dir: %w", err)
	}
	s = &RedisSentinel{dir: dir}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	// a replica's full sync is sent at once (no 5 s wait for others), and
	// a replica is pinged every second, so that its offset is current
	common := []string{"--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"}
	master, err := NewRedisWith(RedisOptions{Args: common})
	if err != nil {
		return s, fmt.Errorf("start the master: %w", err)
	}
	s.nodes = append(s.nodes, master)
	for i := range replicas {
		args := append(append([]string(nil), common...),
			"--replicaof", "127.0.0.1", strconv.Itoa(master.Port), "--enable-debug-command", "local")
		r, err := NewRedisWith(RedisOptions{Args: args})
		if err != nil {
			return s, fmt.Errorf("start replica %d: %w", i+1, err)
		}
		s.nodes = append(s.nodes, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := s.waitReplicas(ctx, master.Addr(), replicas); err != nil {
		return s, err
	}
	bin, err := findBinary("redis-sentinel", "/usr/bin/redis-sentinel")
	if err != nil { // redis-server runs as a sentinel with --sentinel
		if bin, err = findBinary("redis-server", redisBin); err != nil {
			return s, fmt.Errorf("redis-sentinel binary (install redis-sentinel or redis-server): %w", err)
		}
	}
	for i := range sentinelCount {
		sn, err := s.startSentinel(bin, i, master.Port)
		if err != nil {
			return s, err
		}
		s.sentinels = append(s.sentinels, sn)
	}
	if err := s.waitSentinels(ctx, replicas); err != nil {
		return s, err
	}
	return s, nil
}

// startSentinel writes sentinel i's configuration and starts it.
func (s *RedisSentinel) startSentinel(bin string, i, masterPort int) (*sentinel, error) {
	sdir := filepath.Join(s.dir, fmt.Sprintf("sentinel%d", i))
	if err := os.Mkdir(sdir, 0o700); err != nil {
		return nil, fmt.Errorf("create sentinel dir: %w", err)
	}
	conf := filepath.Join(sdir, "sentinel.conf")
	sn := &sentinel{proc: &process{
		name: "redis-sentinel", path: bin, dir: sdir,
		logPath: filepath.Join(sdir, "sentinel.log"), env: cleanEnv(),
	}}
	err := sn.proc.firstStart(fmt.Sprintf("sentinel %d", i+1), func() error {
		port, err := FreePort()
		if err != nil {
			return err
		}
		sn.port = port
		text := strings.Join([]string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"protected-mode no",
			"daemonize no",
			"logfile \"\"",
			"dir " + sdir,
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", SentinelMaster, masterPort, sentinelQuorum),
			// 3 s of silence makes a node down: with 1 s, a master just
			// promoted on a loaded test machine (fsync on every write) was
			// once taken for down and failed over back to the old one
			"sentinel down-after-milliseconds " + SentinelMaster + " 3000",
			"sentinel failover-timeout " + SentinelMaster + " 6000",
			"sentinel parallel-syncs " + SentinelMaster + " 1",
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return fmt.Errorf("write sentinel config: %w", err)
		}
		if err := sn.proc.start([]string{conf, "--sentinel"}); err != nil {
			return err
		}
		return sn.proc.waitReady(readyTimeout, func(ctx context.Context) error {
			_, err := sentinelMasterAddr(ctx, sn.addr())
			return err
		})
	})
	if err != nil {
		return nil, err
	}
	return sn, nil
}

func (sn *sentinel) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(sn.port)) }

// sentinelClient is a client of one sentinel that does not retry.
func sentinelClient(addr string) *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true, DialTimeout: probeTimeout})
}

// sentinelMasterAddr asks the sentinel at addr for the master's address.
func sentinelMasterAddr(ctx context.Context, addr string) (string, error) {
	c := sentinelClient(addr)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	hp, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		return "", fmt.Errorf("sentinel %s: %w", addr, err)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// waitSentinels waits until every sentinel knows the two others and
// replicas replicas, none of them down.
func (s *RedisSentinel) waitSentinels(ctx context.Context, replicas int) error {
	return poll(ctx, "sentinels to know each other and the replicas", func(ctx context.Context) error {
		for _, sn := range s.sentinels {
			c := sentinelClient(sn.addr())
			others, err := c.Sentinels(ctx, SentinelMaster).Result()
			if err == nil && len(others) != sentinelCount-1 {
				err = fmt.Errorf("sentinel %s knows %d other sentinels", sn.addr(), len(others))
			}
			var reps []map[string]string
			if err == nil {
				reps, err = c.Replicas(ctx, SentinelMaster).Result()
			}
			if err == nil {
				up := 0
				for _, r := range reps {
					if !strings.Contains(r["flags"], "down") && !strings.Contains(r["flags"], "disconnected") {
						up++
					}
				}
				if up != replicas {
					err = fmt.Errorf("sentinel %s knows %d replicas up, want %d", sn.addr(), up, replicas)
				}
			}
			_ = c.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// poll runs probe every pollInterval until it returns nil or ctx ends
// (then the last probe's error is returned).
func poll(ctx context.Context, what string, probe func(ctx context.Context) error) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		err := probe(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, err)
		case <-ticker.C:
		}
	}
}

// SentinelAddrs returns the sentinels' addresses.
func (s *RedisSentinel) SentinelAddrs() []string {
	out := make([]string, len(s.sentinels))
	for i, sn := range s.sentinels {
		out[i] = sn.addr()
	}
	return out
}

// Nodes returns the Redis servers' addresses, the first master first.
func (s *RedisSentinel) Nodes() []string {
	out := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		out[i] = n.Addr()
	}
	return out
}

// Master returns the master's address as the first sentinel that answers
// gives it.
func (s *RedisSentinel) Master(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	var errs []error
	for _, sn := range s.sentinels {
		if !sn.proc.running() {
			continue
		}
		addr, err := sentinelMasterAddr(ctx, sn.addr())
		if err == nil {
			return addr
		}
		errs = append(errs, err)
	}
	tb.Fatalf("testsrv: no sentinel names the master: %v", errors.Join(errs...))
	return ""
}

// WaitPromoted waits until every sentinel names a master other than old,
// and that server says it is a master; it returns its address. It fails
// the test after timeout.
func (s *RedisSentinel) WaitPromoted(tb testing.TB, old string, timeout time.Duration) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var master string
	err := poll(ctx, "a new master", func(ctx context.Context) error {
		master = ""
		for _, sn := range s.sentinels {
			addr, err := sentinelMasterAddr(ctx, sn.addr())
			if err != nil {
				return err
			}
			if addr == old {
				return fmt.Errorf("sentinel %s still names %s", sn.addr(), old)
			}
			if master != "" && addr != master {
				return fmt.Errorf("sentinels disagree: %s and %s", master, addr)
			}
			master = addr
		}
		role, err := s.role(ctx, master)
		if err == nil && role != "master" {
			err = fmt.Errorf("%s is still a %s", master, role)
		}
		return err
	})
	if err != nil {
		tb.Fatalf("testsrv: %v\n%s", err, s.logTails())
	}
	return master
}

// role asks the node at addr for its role.
func (s *RedisSentinel) role(ctx context.Context, addr string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
	defer c.Close()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", fmt.Errorf("ROLE at %s: %w", addr, err)
	}
	if len(v) == 0 {
		return "", fmt.Errorf("ROLE at %s: empty reply", addr)
	}
	role, _ := v[0].(string)
	return role, nil
}

// WaitReplicas waits until the master at addr has at least n replicas
// online that have caught up with it. It fails the test after timeout.
func (s *RedisSentinel) WaitReplicas(tb testing.TB, addr string, n int, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := s.waitReplicas(ctx, addr, n); err != nil {
		tb.Fatalf("testsrv: %v\n%s", err, s.logTails())
	}
}

func (s *RedisSentinel) waitReplicas(ctx context.Context, addr string, n int) error {
	return poll(ctx, fmt.Sprintf("%d replicas of %s in sync", n, addr), func(ctx context.Context) error {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DisableIdentity: true})
		defer c.Close()
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("INFO at %s: %w", addr, err)
		}
		fields := infoFields(info)
		if fields["role"] != "master" {
			return fmt.Errorf("%s is a %s", addr, fields["role"])
		}
		offset := fields["master_repl_offset"]
		synced := 0
		for k, v := range fields {
			if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online") && strings.Contains(v, ",offset="+offset+",") {
				synced++
			}
		}
		if synced < n {
			return fmt.Errorf("%s has %d replicas online at offset %s, want %d", addr, synced, offset, n)
		}
		return nil
	})
}

// infoFields parses the "name:value" lines of an INFO reply.
func infoFields(info string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// Client returns a go-redis client of the node at addr, closed by
// tb.Cleanup.
func (s *RedisSentinel) Client(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	n := s.node(tb, addr)
	return n.Client(tb)
}

func (s *RedisSentinel) node(tb testing.TB, addr string) *Redis {
	tb.Helper()
	for _, n := range s.nodes {
		if n.Addr() == addr {
			return n
		}
	}
	tb.Fatalf("testsrv: %s is not a node of %v", addr, s.Nodes())
	return nil
}

// Kill kills the node at addr with SIGKILL, as a crash would.
func (s *RedisSentinel) Kill(tb testing.TB, addr string) {
	tb.Helper()
	n := s.node(tb, addr)
	if !n.proc.running() {
		tb.Fatalf("testsrv: kill %s: not running", addr)
	}
	if err := n.proc.kill(); err != nil {
		tb.Fatalf("testsrv: kill %s: %v", addr, err)
	}
}

// Restart starts a killed node again on its port with its data, as it
// was started first (a master that was replaced comes back as a master
// until the sentinels turn it into a replica of the new one).
func (s *RedisSentinel) Restart(tb testing.TB, addr string) {
	tb.Helper()
	s.node(tb, addr).Start(tb)
}

// LogPaths returns the log files of the nodes and the sentinels.
func (s *RedisSentinel) LogPaths() []string {
	var out []string
	for _, n := range s.nodes {
		out = append(out, n.LogPath())
	}
	for _, sn := range s.sentinels {
		out = append(out, sn.proc.logPath)
	}
	return out
}

func (s *RedisSentinel) logTails() string {
	var b strings.Builder
	for _, sn := range s.sentinels {
		fmt.Fprintf(&b, "--- sentinel %s:\n%s\n", sn.addr(), sn.proc.logTail())
	}
	return b.String()
}

// Close stops the sentinels and the nodes and removes their directories.
func (s *RedisSentinel) Close() error {
	var errs []error
	for _, sn := range s.sentinels {
		if _, err := sn.proc.stop(syscall.SIGTERM, closeTimeout); err != nil {
			errs = append(errs, fmt.Errorf("stop sentinel %s: %w", sn.addr(), err))
		}
	}
	for _, n := range s.nodes {
		if err := n.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove sentinel dir: %w", err))
	}
	return errors.Join(errs...)
}
