package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// TestCluster_Failover runs the daemon against a Redis Cluster of 3
// masters with one replica each and kills one master with SIGKILL while
// the daemon runs. Changes committed before the kill, while the failover
// is in progress (the dead master's replica not yet promoted) and after
// it, on keys of the dead master's slots and of the other masters, are
// all applied: every key is deleted on the promoted replica or its own
// master, every entity gets its message, the slot is not confirmed past
// the commits the daemon could not apply yet and is confirmed past all of
// them in the end, and the daemon never exits.
func TestCluster_Failover(t *testing.T) {
	needIntegration(t)
	cluster := testsrv.StartRedisClusterReplicas(t, 3, 1, testsrv.RedisOptions{
		// a quick failover: the failure is detected after 1 s, and the
		// replica may always be promoted, however long its link was down
		Args: []string{"--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"},
	})
	cc := cluster.Client(t)
	f := newClusterFixture(t, cluster, cc, "")
	ctx := context.Background()

	// slots are computed while every node runs (and cached for later)
	slotCache := map[string]int{}
	slotOf := func(key string) int {
		t.Helper()
		if s, ok := slotCache[key]; ok {
			return s
		}
		s, err := cc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
		}
		slotCache[key] = int(s)
		return int(s)
	}
	// The pattern subscriber (f.sub) is connected to the master of its
	// pattern's slot: kill another master, so that it misses nothing.
	subNode := cluster.SlotOwner(t, slotOf("cache:invalidate:*"))
	var masters []string
	for _, a := range cluster.Addrs() {
		if len(cluster.ReplicasOf(t, a)) > 0 {
			masters = append(masters, a)
		}
	}
	if len(masters) != 3 {
		t.Fatalf("masters with a replica: %v, want 3", masters)
	}
	victim := masters[0]
	if victim == subNode {
		victim = masters[1]
	}
	replicas := cluster.ReplicasOf(t, victim)
	if len(replicas) != 1 {
		t.Fatalf("replicas of %s: %v, want 1", victim, replicas)
	}
	t.Logf("masters %v; killing %s (replica %s); subscriber on %s", masters, victim, replicas[0], subNode)

	// Three phases of users (before, during, after the failover), each
	// with 8 keys on the victim's slots and 4 on other masters.
	key := func(id int) string { return fmt.Sprintf("tenant:fo:user:%d:profile", id) }
	var phases [3][]int
	onVictim, elsewhere, victimSlot := 0, 0, -1
	for id := 1; onVictim < 24 || elsewhere < 12; id++ {
		if id > 2000 {
			t.Fatal("not enough keys on the victim and elsewhere")
		}
		if cluster.SlotOwner(t, slotOf(key(id))) == victim {
			victimSlot = slotOf(key(id))
			if onVictim < 24 {
				phases[onVictim%3] = append(phases[onVictim%3], id)
				onVictim++
			}
		} else if elsewhere < 12 {
			phases[elsewhere%3] = append(phases[elsewhere%3], id)
			elsewhere++
		}
	}
	keysOf := func(ids []int) []string {
		var ks []string
		for _, id := range ids {
			ks = append(ks, key(id))
		}
		return ks
	}
	insert := func(ids ...int) {
		t.Helper()
		var values []string
		for _, id := range ids {
			values = append(values, fmt.Sprintf("('fo', %d, 'n')", id))
		}
		f.exec(`INSERT INTO users VALUES ` + strings.Join(values, ", "))
	}
	before, during, after := phases[0], phases[1], phases[2]

	d := f.startReady()

	// Before: a plain run.
	setAll(t, cc, keysOf(before)...)
	insert(before...)
	waitSync(t, f, d)
	for _, k := range keysOf(before) {
		if existsIn(t, cc, k) {
			t.Errorf("key %s (master %s) was not deleted before the failover", k, masterOf(t, cc, k))
		}
	}

	// The keys of the later phases exist, and the victim's replica has
	// them: WAIT returns once the replica acknowledged every write.
	setAll(t, cc, keysOf(during)...)
	setAll(t, cc, keysOf(after)...)
	for _, m := range masters {
		n, err := cluster.NodeClient(t, m).Do(ctx, "WAIT", 1, 5000).Int()
		if err != nil || n < 1 {
			t.Fatalf("WAIT 1 on %s: %d replicas acknowledged, %v", m, n, err)
		}
	}
	replica := cluster.NodeClient(t, replicas[0])
	if n, err := replica.DBSize(ctx).Result(); err != nil || n < 16 {
		t.Fatalf("DBSIZE on the replica %s: %d, %v; want at least the victim's 16 keys", replicas[0], n, err)
	}

	// During: kill the victim and commit at once, one transaction per
	// user and one with several, mixing the victim's keys and others.
	killed := time.Now()
	cluster.KillNode(t, victim)
	for _, id := range during[:len(during)-3] {
		insert(id)
	}
	insert(during[len(during)-3:]...)
	endDuring := f.currentLSN()
	committed := time.Since(killed)
	// The slot must not be confirmed past commits whose keys live on no
	// writable master: as long as the replica is not promoted, nothing can
	// have deleted them.
	confirmed := f.slotConfirmed()
	if isReplica(t, replica) {
		if confirmed >= endDuring {
			t.Errorf("the slot was confirmed at %s, past the commits of the failover (end %s), before the replica was promoted", confirmed, endDuring)
		}
	} else {
		t.Errorf("the replica was promoted %s after the kill, before the test could check the slot (the commits took %s)", time.Since(killed), committed)
	}
	if d.exited() {
		t.Fatalf("the daemon exited when the master died: %v\n%s", d.err, d.out.String())
	}

	slots := cluster.WaitFailover(t, victim, 60*time.Second)
	failover := time.Since(killed)
	promoted := slots[victimSlot]
	if promoted != replicas[0] {
		t.Fatalf("the victim's slots are served by %s after the failover, want its replica %s", promoted, replicas[0])
	}
	t.Logf("failover of %s to %s took %s (the commits during it took %s after the kill)", victim, promoted, failover.Round(time.Millisecond), committed.Round(time.Millisecond))

	// After: commits on the promoted replica's slots and elsewhere.
	insert(after[:len(after)/2]...)
	for _, id := range after[len(after)/2:] {
		insert(id)
	}
	end := f.currentLSN()
	// Once the cluster has failed over, the daemon's next retry (its
	// backoff is at most 5 s) should reach the promoted replica; it may
	// take longer only if it keeps sending to the dead master.
	failoverSync(t, f, d, 2*waitLong)
	if took := time.Since(killed) - failover; took > recoveryBound {
		t.Errorf("the daemon applied the commits only %s after the cluster had failed over (%s after the kill), want within %s: it kept sending to the dead master %s",
			took.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), recoveryBound, victim)
	} else {
		t.Logf("the daemon caught up %s after the failover", took.Round(time.Millisecond))
	}

	// Nothing was lost: ask the masters themselves, not a client that may
	// still hold the old slot map.
	nodes := map[string]*redis.Client{}
	for _, ids := range [][]int{before, during, after} {
		for _, id := range ids {
			k := key(id)
			m := slots[slotOf(k)]
			if nodes[m] == nil {
				nodes[m] = cluster.NodeClient(t, m)
			}
			n, err := nodes[m].Exists(ctx, k).Result()
			if err != nil {
				t.Fatalf("EXISTS %s on %s: %v", k, m, err)
			}
			if n != 0 {
				t.Errorf("key %s (slot %d, master %s, victim's: %v) was not deleted", k, slotOf(k), m, m == promoted)
			}
			ch := fmt.Sprintf("cache:invalidate:user:fo:%d", id)
			if len(f.sub.on(ch)) == 0 {
				t.Errorf("no message on %s", ch)
			}
		}
	}
	eventually(t, waitLong, "the slot to confirm past the commits of the failover", func() bool { return f.slotConfirmed() >= end })
	if d.exited() {
		t.Fatalf("the daemon exited during the failover: %v\n%s", d.err, d.out.String())
	}
	t.Logf("daemon: %v redis errors, %v keys deleted",
		d.metric(t, "invalidator_errors_total", `kind="redis"`), d.metric(t, "invalidator_keys_deleted_total"))
	if code := d.stop(t); code != 0 {
		t.Errorf("SIGTERM: exit status %d, want 0", code)
	}
}

// isReplica reports whether a node still has the replica role.
func isReplica(t testing.TB, node *redis.Client) bool {
	t.Helper()
	info, err := node.Info(context.Background(), "replication").Result()
	if err != nil {
		t.Fatalf("INFO replication: %v", err)
	}
	return slices.Contains(strings.Split(info, "\r\n"), "role:slave")
}

// recoveryBound is how long after a completed failover the daemon may
// take to apply what it could not apply during it: a few of its retries.
const recoveryBound = 20 * time.Second

// failoverSync is f.sync for a daemon that met Redis errors (a dead
// master) and retries: it commits a sentinel row and waits up to timeout
// for its message, failing at once if the daemon exits.
func failoverSync(t testing.TB, f *fixture, d *daemon, timeout time.Duration) {
	t.Helper()
	rows := f.query("INSERT INTO sentinel DEFAULT VALUES RETURNING id")
	ch := "cache:invalidate:sentinel:" + rows[0][0]
	eventually(t, timeout, "sentinel message "+ch, func() bool {
		if d.exited() {
			t.Fatalf("the daemon exited: %v\n%s", d.err, d.out.String())
		}
		return len(f.sub.on(ch)) > 0
	})
}
