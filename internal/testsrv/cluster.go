package testsrv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// redisCLIBin is where Debian's redis-tools package installs redis-cli.
	redisCLIBin = "/usr/bin/redis-cli"
	// ClusterSlots is the number of hash slots of a Redis Cluster.
	ClusterSlots = 16384
	// clusterTimeout bounds cluster creation and convergence.
	clusterTimeout = 60 * time.Second
)

// RedisCluster is a throwaway Redis Cluster of masters without replicas:
// one redis-server per master (each a Redis of this package started with
// RedisOptions.Cluster, so with its own directory, nodes.conf, loopback
// port and explicit cluster bus port), joined with `redis-cli --cluster
// create` and the 16384 slots split evenly among them.
//
// Addrs, Client, NodeClient and SlotOwner may be used from parallel tests;
// slot migrations and Close must not race with each other.
type RedisCluster struct {
	opts  RedisOptions
	nodes []*Redis
	ids   []string        // node IDs, by node index
	admin []*redis.Client // one plain client per node, for administration

	closeOnce sync.Once
	closeErr  error
}

// NewRedisCluster starts masters nodes, creates the cluster and returns
// once every node reports cluster_state:ok, knows every other node and
// maps all 16384 slots to the same masters. It is meant for TestMain; the
// caller must call Close. On error nothing is left behind.
func NewRedisCluster(masters int) (*RedisCluster, error) {
	return NewRedisClusterWith(masters, RedisOptions{})
}

// NewRedisClusterWith is NewRedisCluster with options for every node:
// with TLS the nodes listen with TLS only and talk TLS on the cluster bus
// too (tls-cluster yes); Users, Username and Password set up ACL users
// that the helper's own clients (and redis-cli) authenticate as. Cluster
// is implied.
func NewRedisClusterWith(masters int, opts RedisOptions) (*RedisCluster, error) {
	return newRedisCluster(masters, 0, opts)
}

// newRedisCluster starts masters*(1+replicas) nodes and creates the cluster
// with `redis-cli --cluster create --cluster-replicas replicas`.
func newRedisCluster(masters, replicas int, opts RedisOptions) (*RedisCluster, error) {
	opts.Cluster = true
	if masters < 3 {
		// redis-cli --cluster create refuses fewer than 3 masters.
		return nil, fmt.Errorf("a Redis Cluster needs at least 3 masters, not %d", masters)
	}
	cli, err := findBinary("redis-cli", redisCLIBin)
	if err != nil {
		return nil, fmt.Errorf("redis-cli (install the redis-tools package): %w", err)
	}
	c := &RedisCluster{opts: opts}
	ok := false
	defer func() {
		if !ok {
			_ = c.Close()
		}
	}()
	for range masters * (1 + replicas) {
		n, err := NewRedisWith(opts)
		if err != nil {
			return nil, fmt.Errorf("start cluster node: %w", err)
		}
		c.nodes = append(c.nodes, n)
		o := n.clientOptions()
		o.MaxRetries = -1
		c.admin = append(c.admin, redis.NewClient(o))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	for i, a := range c.admin {
		id, err := a.ClusterMyID(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("cluster myid of %s: %w", c.nodes[i].Addr(), err)
		}
		c.ids = append(c.ids, id)
	}
	var conn []string
	if t := opts.TLS; t != nil {
		conn = append(conn, "--tls", "--cacert", t.CAFile)
		if t.ClientCertFile != "" {
			conn = append(conn, "--cert", t.ClientCertFile, "--key", t.ClientKeyFile)
		}
	}
	if opts.Username != "" {
		conn = append(conn, "--user", opts.Username)
	}
	env := cleanEnv()
	if opts.Password != "" {
		env = append(env, "REDISCLI_AUTH="+opts.Password) // not on the command line
	}
	args := append(conn, "--cluster", "create")
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	create := exec.CommandContext(ctx, cli, args...)
	create.Env = env
	if out, err := create.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli %s: %w\n%s%s", strings.Join(args, " "), err, out, c.logTails())
	}
	if err := c.waitConverged(ctx, -1, ""); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// StartRedisCluster is NewRedisCluster for a single test: it fails the test
// with tb.Fatal if the cluster cannot be started and registers Close with
// tb.Cleanup, reporting a failed Close with tb.Error.
func StartRedisCluster(tb testing.TB, masters int) *RedisCluster {
	tb.Helper()
	return StartRedisClusterWith(tb, masters, RedisOptions{})
}

// StartRedisClusterWith is NewRedisClusterWith for a single test, like
// StartRedisCluster.
func StartRedisClusterWith(tb testing.TB, masters int, opts RedisOptions) *RedisCluster {
	tb.Helper()
	c, err := NewRedisClusterWith(masters, opts)
	return forTest(tb, c, err)
}

// Addrs returns the nodes' addresses, "127.0.0.1:PORT", in node order.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// Client returns a new go-redis cluster client seeded with every node. It
// is closed by tb.Cleanup.
func (c *RedisCluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	o := &redis.ClusterOptions{Addrs: c.Addrs(), DisableIdentity: true, Username: c.opts.Username, Password: c.opts.Password}
	if c.opts.TLS != nil && c.opts.TLS.ClientConfig != nil {
		o.TLSConfig = c.opts.TLS.ClientConfig.Clone()
	}
	cc := redis.NewClusterClient(o)
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// NodeClient returns a new plain client of the node at addr (one of
// Addrs), for commands that must reach that node and no other. It is
// closed by tb.Cleanup.
func (c *RedisCluster) NodeClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	rc := redis.NewClient(c.nodes[c.node(tb, addr)].clientOptions())
	tb.Cleanup(func() { _ = rc.Close() })
	return rc
}

// SlotOwner returns the address of the master that serves slot, as the
// first node sees it (the nodes agree whenever no migration is under way).
func (c *RedisCluster) SlotOwner(tb testing.TB, slot int) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	m, err := slotMap(ctx, c.admin[0])
	if err != nil {
		tb.Fatalf("testsrv: %v", err)
	}
	return m[slot]
}

// LogPaths returns the nodes' log files, in node order.
func (c *RedisCluster) LogPaths() []string {
	paths := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		paths[i] = n.LogPath()
	}
	return paths
}

// node is index for an address the test knows to be a node's: it fails
// the test if it is not.
func (c *RedisCluster) node(tb testing.TB, addr string) int {
	tb.Helper()
	i := c.index(addr)
	if i < 0 {
		tb.Fatalf("testsrv: %s is not a node of the cluster %v", addr, c.Addrs())
	}
	return i
}

func (c *RedisCluster) index(addr string) int {
	for i, n := range c.nodes {
		if n.Addr() == addr {
			return i
		}
	}
	return -1
}

// SlotMigration is a slot being moved from one master to another, in the
// steps of the Redis Cluster specification: Begin marks it MIGRATING on the
// source and IMPORTING on the destination (clients then get ASK for keys not
// found on the source), MoveKeys moves its keys with MIGRATE, Finish assigns
// the slot to the destination on every node (clients then get MOVED).
type SlotMigration struct {
	c        *RedisCluster
	slot     int
	src, dst int
}

// BeginSlotMigration starts moving slot to the master at dst (one of
// Addrs, not the slot's current owner). It fails the test on error.
func (c *RedisCluster) BeginSlotMigration(tb testing.TB, slot int, dst string) *SlotMigration {
	tb.Helper()
	m := &SlotMigration{c: c, slot: slot, src: c.index(c.SlotOwner(tb, slot)), dst: c.index(dst)}
	if m.dst < 0 || m.src < 0 || m.src == m.dst {
		tb.Fatalf("testsrv: cannot migrate slot %d from %q to %q (nodes %v)", slot, c.SlotOwner(tb, slot), dst, c.Addrs())
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.admin[m.dst].Do(ctx, "cluster", "setslot", slot, "importing", c.ids[m.src]).Err(); err != nil {
		tb.Fatalf("testsrv: cluster setslot %d importing on %s: %v", slot, dst, err)
	}
	if err := c.admin[m.src].Do(ctx, "cluster", "setslot", slot, "migrating", c.ids[m.dst]).Err(); err != nil {
		tb.Fatalf("testsrv: cluster setslot %d migrating on %s: %v", slot, c.nodes[m.src].Addr(), err)
	}
	return m
}

// MoveKeys moves every key of the slot from the source to the destination
// with MIGRATE and returns how many it moved.
func (m *SlotMigration) MoveKeys(tb testing.TB) int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	src, dst := m.c.admin[m.src], m.c.nodes[m.dst]
	moved := 0
	for {
		keys, err := src.ClusterGetKeysInSlot(ctx, m.slot, 100).Result()
		if err != nil {
			tb.Fatalf("testsrv: cluster getkeysinslot %d: %v", m.slot, err)
		}
		if len(keys) == 0 {
			return moved
		}
		args := []any{"migrate", "127.0.0.1", dst.Port, "", 0, 5000}
		switch o := m.c.opts; {
		case o.Username != "":
			args = append(args, "auth2", o.Username, o.Password)
		case o.Password != "":
			args = append(args, "auth", o.Password)
		}
		args = append(args, "keys")
		for _, k := range keys {
			args = append(args, k)
		}
		if err := src.Do(ctx, args...).Err(); err != nil {
			tb.Fatalf("testsrv: migrate %d keys of slot %d to %s: %v", len(keys), m.slot, dst.Addr(), err)
		}
		moved += len(keys)
	}
}

// Finish assigns the slot to the destination on the destination, the
// source and every other node, and returns once every node maps the slot
// to the destination and reports cluster_state:ok.
func (m *SlotMigration) Finish(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	order := []int{m.dst, m.src}
	for i := range m.c.nodes {
		if i != m.dst && i != m.src {
			order = append(order, i)
		}
	}
	for _, i := range order {
		if err := m.c.admin[i].Do(ctx, "cluster", "setslot", m.slot, "node", m.c.ids[m.dst]).Err(); err != nil {
			tb.Fatalf("testsrv: cluster setslot %d node on %s: %v", m.slot, m.c.nodes[i].Addr(), err)
		}
	}
	if err := m.c.waitConverged(ctx, m.slot, m.c.nodes[m.dst].Addr()); err != nil {
		tb.Fatalf("testsrv: %v", err)
	}
}

// MoveSlot moves slot with its keys to the master at dst: BeginSlotMigration,
// MoveKeys and Finish. It returns the number of keys moved.
func (c *RedisCluster) MoveSlot(tb testing.TB, slot int, dst string) int {
	tb.Helper()
	m := c.BeginSlotMigration(tb, slot, dst)
	n := m.MoveKeys(tb)
	m.Finish(tb)
	return n
}

// waitConverged polls every node until each reports cluster_state:ok with
// all slots assigned and ok, knows every node, and maps the 16384 slots to
// masters of this cluster exactly as every other node does; with slot >= 0
// the slot must also be mapped to owner.
func (c *RedisCluster) waitConverged(ctx context.Context, slot int, owner string) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		err := c.converged(ctx, slot, owner)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster did not converge: %w%s", err, c.logTails())
		case <-ticker.C:
		}
	}
}

func (c *RedisCluster) converged(ctx context.Context, slot int, owner string) error {
	var first []string
	for i, a := range c.admin {
		if !c.nodes[i].proc.running() {
			return fmt.Errorf("node %s is not running", c.nodes[i].Addr())
		}
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		info, err := a.ClusterInfo(pctx).Result()
		if err != nil {
			cancel()
			return fmt.Errorf("cluster info on %s: %w", c.nodes[i].Addr(), err)
		}
		for _, want := range []string{
			"cluster_state:ok",
			"cluster_slots_assigned:" + strconv.Itoa(ClusterSlots),
			"cluster_slots_ok:" + strconv.Itoa(ClusterSlots),
			"cluster_known_nodes:" + strconv.Itoa(len(c.nodes)),
		} {
			if !strings.Contains(info, want+"\r\n") {
				cancel()
				return fmt.Errorf("cluster info on %s lacks %s", c.nodes[i].Addr(), want)
			}
		}
		m, err := slotMap(pctx, a)
		cancel()
		if err != nil {
			return fmt.Errorf("on %s: %w", c.nodes[i].Addr(), err)
		}
		for s, addr := range m {
			if c.index(addr) < 0 {
				return fmt.Errorf("%s maps slot %d to %q, not a node of this cluster", c.nodes[i].Addr(), s, addr)
			}
		}
		if slot >= 0 && m[slot] != owner {
			return fmt.Errorf("%s maps slot %d to %s, want %s", c.nodes[i].Addr(), slot, m[slot], owner)
		}
		if first == nil {
			first = m
			continue
		}
		for s := range m {
			if m[s] != first[s] {
				return fmt.Errorf("%s maps slot %d to %s, %s to %s", c.nodes[i].Addr(), s, m[s], c.nodes[0].Addr(), first[s])
			}
		}
	}
	return nil
}

// slotMap returns the master address of every slot according to CLUSTER
// SLOTS on one node; it fails unless all 16384 slots are covered.
func slotMap(ctx context.Context, a *redis.Client) ([]string, error) {
	//lint:ignore SA1019 CLUSTER SLOTS also answers on Redis 6; CLUSTER SHARDS needs 7
	ranges, err := a.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster slots: %w", err)
	}
	m := make([]string, ClusterSlots)
	for _, r := range ranges {
		if len(r.Nodes) == 0 || r.Start < 0 || r.End >= ClusterSlots || r.Start > r.End {
			return nil, fmt.Errorf("cluster slots: bad range %+v", r)
		}
		for s := r.Start; s <= r.End; s++ {
			m[s] = r.Nodes[0].Addr
		}
	}
	for s, addr := range m {
		if addr == "" {
			return nil, fmt.Errorf("cluster slots: slot %d is not served", s)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("cluster slots: slot %d: bad address %q", s, addr)
		}
	}
	return m, nil
}

// logTails returns the log tails of every node, for error messages.
func (c *RedisCluster) logTails() string {
	var b strings.Builder
	for _, n := range c.nodes {
		b.WriteString("\n")
		b.WriteString(n.proc.logTail())
	}
	return b.String()
}

// Close stops every node and removes their directories. It returns only
// when every process is gone. It may be called more than once; later calls
// return the first call's result.
func (c *RedisCluster) Close() error {
	c.closeOnce.Do(func() {
		var errs []error
		for _, a := range c.admin {
			_ = a.Close()
		}
		var wg sync.WaitGroup
		errCh := make(chan error, len(c.nodes))
		for _, n := range c.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := n.Close(); err != nil {
					errCh <- err
				}
			}()
		}
		wg.Wait()
		close(errCh)
		for err := range errCh {
			errs = append(errs, err)
		}
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
