package publisher

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/internal/resp"
	"github.com/cachewire/invalidator/internal/testsrv"
)

// replicated returns a master and a replica of it, in sync.
func replicated(t *testing.T) (master, replica *redis.Client) {
	t.Helper()
	master, replica = queueRedis(t), queueRedis(t)
	ctx := context.Background()
	if err := master.ConfigSet(ctx, "repl-diskless-sync-delay", "0").Err(); err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(master.Options().Addr)
	if err := replica.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica in sync", func() bool {
		n, err := master.Wait(ctx, 1, 10*time.Millisecond).Result()
		return err == nil && n == 1 && strings.Contains(replica.Info(ctx, "replication").Val(), "master_link_status:up")
	})
	return master, replica
}

// confirmed records what an Applier confirms and the errors it retries.
type confirmed struct {
	mu     sync.Mutex
	lsn    cdc.LSN
	errs   []error
	okKeys int64
}

func (c *confirmed) Confirm(lsn cdc.LSN) { c.mu.Lock(); c.lsn = lsn; c.mu.Unlock() }
func (c *confirmed) Applied(_ []Applied, st Stats, _ time.Duration) {
	c.mu.Lock()
	c.okKeys += st.KeysDeleted
	c.mu.Unlock()
}
func (c *confirmed) ApplyFailed(err error) { c.mu.Lock(); c.errs = append(c.errs, err); c.mu.Unlock() }
func (c *confirmed) Bridged(int)           {}
func (c *confirmed) BridgeFailed(error)    {}

func (c *confirmed) state() (cdc.LSN, []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lsn, append([]error(nil), c.errs...)
}

// With MinReplicas 1, a batch the replica has not acknowledged is retried
// and not confirmed, whatever the master acknowledged; once the replica
// takes writes again, it is confirmed.
func TestApplier_MinReplicas(t *testing.T) {
	master, replica := replicated(t)
	ctx, cancel := context.WithCancel(context.Background())
	batch, _ := queueBatch(t)
	// the first transaction's first key, and the second's
	keys := []string{batch[0].Txn.Result().Keys[0], batch[1].Txn.Result().Keys[0]}
	for _, k := range keys {
		if err := master.Set(ctx, k, "cached", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	p := New(master, Config{ChannelPrefix: "inv:", Journal: true, MinReplicas: 1, WaitTimeout: 100 * time.Millisecond})
	defer p.Close()
	in := make(chan Applied)
	rec := &confirmed{}
	a := NewApplier(p, in, rec, rec, zap.NewNop(), ApplierConfig{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	waitFor(t, "the keys on the replica", func() bool { return replica.Exists(ctx, keys...).Val() == 2 })
	in <- batch[0]
	waitFor(t, "the first transaction confirmed", func() bool { lsn, _ := rec.state(); return lsn == batch[0].EndLSN })

	// the replica stops applying what the master sends
	if err := replica.Do(ctx, "CLIENT", "PAUSE", "60000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	in <- batch[1]
	waitFor(t, "the second transaction's key deleted on the master", func() bool { return master.Exists(ctx, keys[1]).Val() == 0 })
	waitFor(t, "two failed WAITs", func() bool { _, errs := rec.state(); return len(errs) >= 2 })
	lsn, errs := rec.state()
	if lsn != batch[0].EndLSN {
		t.Fatalf("confirmed %s while the replica is held, want %s", lsn, batch[0].EndLSN)
	}
	var short *ReplicasError
	if !errors.As(errs[0], &short) || short.Acked != 0 || short.Want != 1 || !strings.Contains(errs[0].Error(), "0 of 1 replicas acknowledged") {
		t.Fatalf("error %v, want a ReplicasError saying 0 of 1", errs[0])
	}
	if n := replica.Exists(ctx, keys[1]).Val(); n != 1 {
		t.Fatalf("the held replica has lost the key already (%d): replication was not held", n)
	}

	if err := replica.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second transaction confirmed", func() bool { lsn, _ := rec.state(); return lsn == batch[1].EndLSN })
	if n := replica.Exists(ctx, keys[1]).Val(); n != 0 {
		t.Fatal("confirmed, but the replica still has the key")
	}
}

// A master without replicas fails every WAIT, for the exact keys (own
// connection) and the pattern deletes (go-redis) alike; MinReplicas 0
// does not wait.
func TestApply_MinReplicasWithoutReplica(t *testing.T) {
	rdb := queueRedis(t)
	ctx := context.Background()
	batch, _ := queueBatch(t)
	p := New(rdb, Config{ChannelPrefix: "inv:", MinReplicas: 1, WaitTimeout: 20 * time.Millisecond})
	defer p.Close()
	var short *ReplicasError
	if _, err := p.Apply(ctx, batch[:2]); !errors.As(err, &short) || short.Acked != 0 {
		t.Fatalf("apply: %v, want a ReplicasError", err)
	}
	if _, err := p.deleteMatching(ctx, "tenant:*", nil); !errors.As(err, &short) {
		t.Fatalf("pattern delete: %v, want a ReplicasError", err)
	}
	p0 := New(rdb, Config{ChannelPrefix: "inv:"})
	defer p0.Close()
	if _, err := p0.Apply(ctx, batch[:2]); err != nil {
		t.Fatalf("apply without MinReplicas: %v", err)
	}
}

// Behind Sentinel, the Publisher's own connection goes to the master the
// sentinels name, and after a failover to the promoted replica: the
// Apply that fails on the dead master is applied on the new one.
func TestApply_SentinelFollowsMaster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	s := testsrv.StartRedisSentinel(t, 1)
	ctx := context.Background()
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: testsrv.SentinelMaster, SentinelAddrs: s.SentinelAddrs(), MaxRetries: -1})
	defer rdb.Close()
	batch, _ := queueBatch(t)
	key := batch[0].Txn.Result().Keys[0]
	old := s.Master(t)
	oldc := s.Client(t, old)
	if err := oldc.Set(ctx, key, "cached", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p := New(rdb, Config{ChannelPrefix: "inv:", Sentinel: &resp.Sentinel{Addrs: s.SentinelAddrs(), Master: testsrv.SentinelMaster}, MinReplicas: 1})
	defer p.Close()
	if _, err := p.Apply(ctx, batch[:1]); err != nil {
		t.Fatalf("apply on the first master: %v", err)
	}
	if n := oldc.Exists(ctx, key).Val(); n != 0 {
		t.Fatal("not deleted on the first master")
	}

	s.Kill(t, old)
	promoted := s.WaitPromoted(t, old, 60*time.Second)
	newc := s.Client(t, promoted)
	if err := newc.Set(ctx, key, "cached", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p.cfg.MinReplicas = 0 // the new master has no replica until the old one is back
	// the connection to the dead master fails, and the immediate retry
	// on a new one reaches the promoted master
	if _, err := p.Apply(ctx, batch[:1]); err != nil {
		t.Fatalf("apply after the failover: %v, want it applied on %s", err, promoted)
	}
	if n := newc.Exists(ctx, key).Val(); n != 0 {
		t.Fatal("not deleted on the promoted master")
	}
	if got := p.conn.Addr(); got != promoted {
		t.Fatalf("connected to %s, want the promoted %s", got, promoted)
	}
}

// On a Redis Cluster, the deletes of a batch are waited for on each
// master they went to: acknowledged by its replica with 1, short of
// replicas with 2; the keys are deleted either way.
func TestApply_ClusterMinReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	cluster := testsrv.StartRedisClusterReplicas(t, 3, 1, testsrv.RedisOptions{})
	cc := cluster.Client(t)
	ctx := context.Background()
	batch, keys := queueBatch(t)
	batch = batch[:20]                                             // single-row transactions: keys on every master
	keys = slices.Compact(slices.Sorted(slices.Values(keys[:40]))) // the tenants' keys repeat
	for _, want := range []int{1, 2} {
		for _, k := range keys {
			if err := cc.Set(ctx, k, "cached", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		p := New(cc, Config{ChannelPrefix: "inv:", Journal: true, MinReplicas: want, WaitTimeout: 200 * time.Millisecond})
		st, err := p.Apply(ctx, batch)
		var short *ReplicasError
		switch {
		case want == 1 && err != nil:
			t.Fatalf("MinReplicas 1: %v", err)
		case want == 2 && (!errors.As(err, &short) || short.Acked != 1 || short.Want != 2):
			t.Fatalf("MinReplicas 2: %v, want 1 of 2 replicas acknowledged", err)
		}
		if want == 1 && st.KeysDeleted != int64(len(keys)) {
			t.Errorf("MinReplicas 1: %d keys deleted, want %d", st.KeysDeleted, len(keys))
		}
		for _, k := range keys {
			if cc.Exists(ctx, k).Val() != 0 {
				t.Fatalf("MinReplicas %d: %s not deleted", want, k)
			}
		}
		_ = p.Close()
	}
}
