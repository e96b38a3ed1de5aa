package testsrv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRedisCluster(t *testing.T) {
	c := StartRedisCluster(t, 3)
	ctx := context.Background()
	addrs := c.Addrs()
	if len(addrs) != 3 {
		t.Fatalf("Addrs() = %v, want 3 nodes", addrs)
	}
	for i, n := range c.nodes {
		if n.BusPort == 0 || n.BusPort == n.Port {
			t.Errorf("node %d: bus port %d, port %d", i, n.BusPort, n.Port)
		}
	}

	// Every master serves a share of the slots, and the nodes agree.
	owners := map[string]int{}
	for s := 0; s < ClusterSlots; s++ {
		owners[c.SlotOwner(t, s)]++
		if s > 10 {
			s += 97 // sample: SlotOwner asks a node each time
		}
	}
	if len(owners) != 3 {
		t.Errorf("slot owners %v, want all 3 masters", owners)
	}

	// A cluster client reaches keys on every master.
	cc := c.Client(t)
	perNode := map[string]int{}
	for i := range 60 {
		k := fmt.Sprintf("key:%d", i)
		if err := cc.Set(ctx, k, "v", 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		n, err := cc.MasterForKey(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		perNode[n.Options().Addr]++
	}
	if len(perNode) != 3 {
		t.Errorf("60 keys landed on %v, want all 3 masters", perNode)
	}
	// A node refuses keys it does not own.
	slot, err := c.NodeClient(t, addrs[0]).ClusterKeySlot(ctx, "key:0").Result()
	if err != nil {
		t.Fatal(err)
	}
	owner := c.SlotOwner(t, int(slot))
	other := addrs[0]
	if other == owner {
		other = addrs[1]
	}
	if err := c.NodeClient(t, other).Get(ctx, "key:0").Err(); err == nil || !strings.Contains(err.Error(), "MOVED") {
		t.Errorf("GET on a non-owner: %v, want MOVED", err)
	}

	// Moving the slot moves the key; the cluster client follows.
	if n := c.MoveSlot(t, int(slot), other); n != 1 {
		t.Errorf("MoveSlot moved %d keys, want 1", n)
	}
	if got := c.SlotOwner(t, int(slot)); got != other {
		t.Errorf("slot %d owner after MoveSlot = %s, want %s", slot, got, other)
	}
	if v, err := c.NodeClient(t, other).Get(ctx, "key:0").Result(); err != nil || v != "v" {
		t.Errorf("GET key:0 on the new owner = %q, %v", v, err)
	}
	if v, err := cc.Get(ctx, "key:0").Result(); err != nil || v != "v" {
		t.Errorf("cluster client GET key:0 after the move = %q, %v", v, err)
	}

	var pids []int
	var dirs []string
	for _, n := range c.nodes {
		pids = append(pids, n.proc.cmd.Process.Pid)
		dirs = append(dirs, n.dir)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for i, pid := range pids {
		if groupAlive(pid) {
			t.Errorf("node %d still running after Close", i)
		}
		if _, err := os.Stat(dirs[i]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("node dir %s still there after Close (stat: %v)", dirs[i], err)
		}
	}
}

// TestRedisClusterASK checks a slot in mid-migration: a key already moved
// is answered with ASK by the source, which the cluster client follows.
func TestRedisClusterASK(t *testing.T) {
	c := StartRedisCluster(t, 3)
	ctx := context.Background()
	cc := c.Client(t)
	if err := cc.Set(ctx, "ask:me", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slot := int(keySlot(t, c, "ask:me"))
	src := c.SlotOwner(t, slot)
	dst := c.Addrs()[0]
	if dst == src {
		dst = c.Addrs()[1]
	}
	m := c.BeginSlotMigration(t, slot, dst)
	if n := m.MoveKeys(t); n != 1 {
		t.Fatalf("moved %d keys, want 1", n)
	}
	if err := c.NodeClient(t, src).Get(ctx, "ask:me").Err(); err == nil || !strings.Contains(err.Error(), "ASK") {
		t.Errorf("GET on the migrating source: %v, want ASK", err)
	}
	if v, err := cc.Get(ctx, "ask:me").Result(); err != nil || v != "v" {
		t.Errorf("cluster client GET during migration = %q, %v", v, err)
	}
	m.Finish(t)
	if got := c.SlotOwner(t, slot); got != dst {
		t.Errorf("owner after Finish = %s, want %s", got, dst)
	}
}

func keySlot(t *testing.T, c *RedisCluster, key string) int64 {
	t.Helper()
	s, err := c.admin[0].ClusterKeySlot(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRedisClusterTLS checks a cluster whose nodes accept only TLS with a
// client certificate and an ACL user, including a slot migration (MIGRATE
// between nodes over TLS, authenticated).
func TestRedisClusterTLS(t *testing.T) {
	p := StartPKI(t)
	const pw = "cluster-pw-77"
	c := StartRedisClusterWith(t, 3, RedisOptions{
		TLS:      p.RedisTLS(true),
		Users:    []string{"default off", "inv on >" + pw + " ~* &* +@all"},
		Username: "inv", Password: pw,
	})
	ctx := context.Background()
	cc := c.Client(t)
	for i := range 30 {
		if err := cc.Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err(); err != nil {
			t.Fatalf("SET over TLS: %v", err)
		}
	}
	slot := int(keySlot(t, c, "k0"))
	src := c.SlotOwner(t, slot)
	dst := c.Addrs()[0]
	if dst == src {
		dst = c.Addrs()[1]
	}
	if n := c.MoveSlot(t, slot, dst); n != 1 {
		t.Errorf("moved %d keys, want 1", n)
	}
	if v, err := cc.Get(ctx, "k0").Result(); err != nil || v != "v" {
		t.Errorf("GET k0 after the move = %q, %v", v, err)
	}
	plain := redis.NewClient(&redis.Options{Addr: dst, DisableIdentity: true, MaxRetries: -1})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Error("a node answered a plain TCP client")
	}
}
