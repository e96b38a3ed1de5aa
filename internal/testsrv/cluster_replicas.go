package testsrv

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// NewRedisClusterReplicas is NewRedisClusterWith with replicas replicas
// per master: it starts masters*(1+replicas) nodes, creates the cluster
// with `redis-cli --cluster create --cluster-replicas replicas` and returns
// once, besides what NewRedisCluster waits for, every node agrees that
// each master has replicas replicas, every master reports them connected
// and online and every replica reports its link to its master up with no
// sync in progress. Node settings such as a short cluster-node-timeout
// (for a quick failover) go in opts.Args. The caller must call Close. On
// error nothing is left behind.
func NewRedisClusterReplicas(masters, replicas int, opts RedisOptions) (*RedisCluster, error) {
	if replicas < 0 {
		return nil, fmt.Errorf("a Redis Cluster cannot have %d replicas per master", replicas)
	}
	c, err := newRedisCluster(masters, replicas, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.waitReplicated(ctx, replicas); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// StartRedisClusterReplicas is NewRedisClusterReplicas for a single test,
// like StartRedisCluster.
func StartRedisClusterReplicas(tb testing.TB, masters, replicas int, opts RedisOptions) *RedisCluster {
	tb.Helper()
	c, err := NewRedisClusterReplicas(masters, replicas, opts)
	return forTest(tb, c, err)
}

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, addr, masterID string
	flags              []string
	slots              bool // serves at least one slot
}

func (n clusterNode) is(flag string) bool {
	for _, f := range n.flags {
		if f == flag {
			return true
		}
	}
	return false
}

// clusterNodes returns a node's CLUSTER NODES, addresses without the bus
// port.
func (c *RedisCluster) clusterNodes(ctx context.Context, i int) ([]clusterNode, error) {
	out, err := c.admin[i].ClusterNodes(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster nodes on %s: %w", c.nodes[i].Addr(), err)
	}
	var nodes []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 8 {
			return nil, fmt.Errorf("cluster nodes on %s: bad line %q", c.nodes[i].Addr(), line)
		}
		addr, _, _ := strings.Cut(fields[1], "@")
		addr, _, _ = strings.Cut(addr, ",") // a hostname may follow
		nodes = append(nodes, clusterNode{
			id:       fields[0],
			addr:     addr,
			flags:    strings.Split(fields[2], ","),
			masterID: fields[3],
			slots:    len(fields) > 8,
		})
	}
	return nodes, nil
}

// live returns the indexes of the nodes whose process is running.
func (c *RedisCluster) live() []int {
	var idx []int
	for i, n := range c.nodes {
		if n.proc.running() {
			idx = append(idx, i)
		}
	}
	return idx
}

// waitReplicated polls until the replication topology is complete; see
// NewRedisClusterReplicas.
func (c *RedisCluster) waitReplicated(ctx context.Context, replicas int) error {
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		err := c.replicated(ctx, replicas)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster replicas did not come up: %w%s", err, c.logTails())
		case <-ticker.C:
		}
	}
}

func (c *RedisCluster) replicated(ctx context.Context, replicas int) error {
	if err := c.converged(ctx, -1, ""); err != nil {
		return err
	}
	var first string
	for i := range c.nodes {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		nodes, err := c.clusterNodes(pctx, i)
		cancel()
		if err != nil {
			return err
		}
		// the view of roles: master address -> sorted replica addresses
		masters := map[string]string{}
		byID := map[string]clusterNode{}
		for _, n := range nodes {
			byID[n.id] = n
		}
		for _, n := range nodes {
			if n.is("fail") || n.is("fail?") || n.is("noaddr") || n.is("handshake") {
				return fmt.Errorf("%s sees %s as %v", c.nodes[i].Addr(), n.addr, n.flags)
			}
			if n.is("master") && n.slots {
				if _, ok := masters[n.addr]; !ok {
					masters[n.addr] = ""
				}
			}
			if n.is("slave") {
				m, ok := byID[n.masterID]
				if !ok {
					return fmt.Errorf("%s sees %s replicating unknown node %s", c.nodes[i].Addr(), n.addr, n.masterID)
				}
				masters[m.addr] += n.addr + " "
			}
		}
		var view []string
		for m, rs := range masters {
			if got := len(strings.Fields(rs)); got != replicas {
				return fmt.Errorf("%s sees %d replicas of %s, want %d", c.nodes[i].Addr(), got, m, replicas)
			}
			view = append(view, m+"<-"+rs)
		}
		if len(masters)*(1+replicas) != len(c.nodes) {
			return fmt.Errorf("%s sees %d masters with slots among %d nodes", c.nodes[i].Addr(), len(masters), len(c.nodes))
		}
		slices.Sort(view)
		v := strings.Join(view, ";")
		if i == 0 {
			first = v
		} else if v != first {
			return fmt.Errorf("%s sees roles %s, %s sees %s", c.nodes[i].Addr(), v, c.nodes[0].Addr(), first)
		}
		if err := c.replicationUp(ctx, i, replicas); err != nil {
			return err
		}
	}
	return nil
}

// replicationUp checks INFO replication of node i: a master has replicas
// replicas connected and online, a replica has its link up and no sync in
// progress.
func (c *RedisCluster) replicationUp(ctx context.Context, i, replicas int) error {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	info, err := c.admin[i].Info(pctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("info replication on %s: %w", c.nodes[i].Addr(), err)
	}
	fields := infoFields(info)
	online := 0
	for k, v := range fields {
		if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online") {
			online++
		}
	}
	switch fields["role"] {
	case "master":
		if n, _ := strconv.Atoi(fields["connected_slaves"]); n != replicas || online != replicas {
			return fmt.Errorf("master %s has %s replicas connected, %d online, want %d", c.nodes[i].Addr(), fields["connected_slaves"], online, replicas)
		}
	case "slave":
		if fields["master_link_status"] != "up" || fields["master_sync_in_progress"] != "0" {
			return fmt.Errorf("replica %s: master_link_status:%s master_sync_in_progress:%s", c.nodes[i].Addr(), fields["master_link_status"], fields["master_sync_in_progress"])
		}
	default:
		return fmt.Errorf("%s has role %q", c.nodes[i].Addr(), fields["role"])
	}
	return nil
}

// ReplicasOf returns the addresses of the nodes that replicate the master
// at addr, as the first running node other than addr sees them.
func (c *RedisCluster) ReplicasOf(tb testing.TB, addr string) []string {
	tb.Helper()
	i := c.node(tb, addr)
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	for _, j := range c.live() {
		if j == i {
			continue
		}
		nodes, err := c.clusterNodes(ctx, j)
		if err != nil {
			tb.Fatalf("testsrv: %v", err)
		}
		var out []string
		for _, n := range nodes {
			if n.is("slave") && n.masterID == c.ids[i] {
				out = append(out, n.addr)
			}
		}
		return out
	}
	tb.Fatalf("testsrv: no running node besides %s", addr)
	return nil
}

// KillNode kills the node at addr with SIGKILL, together with its process
// group, as a crash would, and returns once it is gone. Its data directory
// stays; the other nodes notice the failure after cluster-node-timeout and,
// if it was a master with a replica, promote the replica (see
// WaitFailover). Close still cleans up.
func (c *RedisCluster) KillNode(tb testing.TB, addr string) {
	tb.Helper()
	i := c.node(tb, addr)
	if !c.nodes[i].proc.running() {
		tb.Fatalf("testsrv: kill %s: not running", addr)
	}
	if err := c.nodes[i].proc.kill(); err != nil {
		tb.Fatalf("testsrv: kill %s: %v", addr, err)
	}
}

// WaitFailover polls the running nodes until each of them flags the
// killed node dead as failed, reports cluster_state:ok with all 16384
// slots assigned and ok, and maps every slot to the same running master,
// none to dead. It returns that slot map (master address by slot). It
// fails the test after timeout.
func (c *RedisCluster) WaitFailover(tb testing.TB, dead string, timeout time.Duration) []string {
	tb.Helper()
	d := c.node(tb, dead)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		m, err := c.failedOver(ctx, d)
		if err == nil {
			return m
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("testsrv: no failover of %s within %s: %v%s", dead, timeout, err, c.logTails())
		case <-ticker.C:
		}
	}
}

func (c *RedisCluster) failedOver(ctx context.Context, dead int) ([]string, error) {
	if c.nodes[dead].proc.running() {
		return nil, fmt.Errorf("node %s is still running", c.nodes[dead].Addr())
	}
	var first []string
	for _, i := range c.live() {
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		info, err := c.admin[i].ClusterInfo(pctx).Result()
		if err != nil {
			cancel()
			return nil, fmt.Errorf("cluster info on %s: %w", c.nodes[i].Addr(), err)
		}
		for _, want := range []string{
			"cluster_state:ok",
			"cluster_slots_assigned:" + strconv.Itoa(ClusterSlots),
			"cluster_slots_ok:" + strconv.Itoa(ClusterSlots),
		} {
			if !strings.Contains(info, want+"\r\n") {
				cancel()
				return nil, fmt.Errorf("cluster info on %s lacks %s", c.nodes[i].Addr(), want)
			}
		}
		nodes, err := c.clusterNodes(pctx, i)
		if err != nil {
			cancel()
			return nil, err
		}
		for _, n := range nodes {
			if n.id == c.ids[dead] && !n.is("fail") {
				cancel()
				return nil, fmt.Errorf("%s flags %s as %v, not fail", c.nodes[i].Addr(), n.addr, n.flags)
			}
		}
		m, err := slotMap(pctx, c.admin[i])
		cancel()
		if err != nil {
			return nil, fmt.Errorf("on %s: %w", c.nodes[i].Addr(), err)
		}
		for s, addr := range m {
			if j := c.index(addr); j < 0 || j == dead {
				return nil, fmt.Errorf("%s maps slot %d to %s", c.nodes[i].Addr(), s, addr)
			}
		}
		if first == nil {
			first = m
			continue
		}
		for s := range m {
			if m[s] != first[s] {
				return nil, fmt.Errorf("%s maps slot %d to %s, another node to %s", c.nodes[i].Addr(), s, m[s], first[s])
			}
		}
	}
	if first == nil {
		return nil, fmt.Errorf("no node is running")
	}
	return first, nil
}

// LiveSlotOwner is SlotOwner as the first running node sees it (SlotOwner
// asks the first node, which KillNode may have killed).
func (c *RedisCluster) LiveSlotOwner(tb testing.TB, slot int) string {
	tb.Helper()
	live := c.live()
	if len(live) == 0 {
		tb.Fatal("testsrv: no node is running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	m, err := slotMap(ctx, c.admin[live[0]])
	if err != nil {
		tb.Fatalf("testsrv: %v", err)
	}
	return m[slot]
}
