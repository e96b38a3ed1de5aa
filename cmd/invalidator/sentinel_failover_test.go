package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// TestSentinel_Failover proves the need for INVALIDATOR_REDIS_MIN_REPLICAS
// and the fix. The daemon writes to a Redis master behind three sentinels,
// with one replica; the replica is held back (CLIENT PAUSE WRITE: it keeps
// reading and answering, but applies nothing the master sends), rows whose
// keys are cached are committed, the daemon deletes the keys on the master,
// then the master is killed with SIGKILL and the sentinels promote the
// replica. A key deleted on the old master that exists again on the new one
// is resurrected: with 0, the daemon confirmed those deletes and nothing
// sends them again; with 1, it never confirmed them, stalls while the new
// master has no replica, and once the old master is back (as a replica of
// the new one) it applies them again: none is resurrected.
func TestSentinel_Failover(t *testing.T) {
	needIntegration(t)
	for _, n := range []int{0, 1} {
		t.Run(fmt.Sprintf("min_replicas=%d", n), func(t *testing.T) { sentinelFailover(t, n) })
	}
}

func sentinelFailover(t *testing.T, minReplicas int) {
	const held = 300 // rows committed while the replica is held back
	ctx := context.Background()
	s := testsrv.StartRedisSentinel(t, 1)
	old, replicaAddr := s.Master(t), s.Nodes()[1]
	oldc, repc := s.Client(t, old), s.Client(t, replicaAddr)

	f := newDatabaseFixture(t, rulesYAML)
	f.rdb = redis.NewFailoverClient(&redis.FailoverOptions{MasterName: testsrv.SentinelMaster, SentinelAddrs: s.SentinelAddrs()})
	t.Cleanup(func() { _ = f.rdb.Close() })
	f.sub = newSubscriber(t, f.rdb, "cache:invalidate:*")
	f.env = append(f.env,
		"INVALIDATOR_REDIS_SENTINEL_ADDRS="+strings.Join(s.SentinelAddrs(), ","),
		"INVALIDATOR_REDIS_SENTINEL_MASTER="+testsrv.SentinelMaster,
		fmt.Sprintf("INVALIDATOR_REDIS_MIN_REPLICAS=%d", minReplicas),
		"INVALIDATOR_REDIS_WAIT_TIMEOUT=300ms",
		"INVALIDATOR_HEARTBEAT_INTERVAL=0", // nothing but the test's rows in the WAL
	)
	key := func(id int) string { return fmt.Sprintf("tenant:rf:user:%d:profile", id) }
	var values []string
	for id := 1; id <= held; id++ {
		values = append(values, fmt.Sprintf("('rf', %d, 'a')", id))
	}
	f.exec("INSERT INTO users(tenant_id, id, name) VALUES " + strings.Join(values, ","))
	d := f.startReady()
	f.sync()

	heldKeys := make([]string, held)
	for i := range heldKeys {
		heldKeys[i] = key(i + 1)
	}
	pipe := oldc.Pipeline()
	for _, k := range heldKeys {
		pipe.Set(ctx, k, "cached", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	s.WaitReplicas(t, old, 1, waitLong)
	if n := repc.Exists(ctx, heldKeys...).Val(); n != held {
		t.Fatalf("the replica has %d of the %d keys", n, held)
	}

	// Hold the replica back, then commit the rows.
	if err := repc.Do(ctx, "CLIENT", "PAUSE", "300000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	unpaused := false
	unpause := func() {
		if !unpaused {
			unpaused = true
			_ = repc.Do(ctx, "CLIENT", "UNPAUSE").Err()
		}
	}
	defer unpause()
	before := f.currentLSN() // every held row commits after it
	// 50 rows in the first transaction (with MIN_REPLICAS it is the batch
	// that waits), then one row a transaction
	f.exec("UPDATE users SET name = 'b' WHERE tenant_id = 'rf' AND id <= 50")
	for id := 50; id <= held; id++ {
		if id > 50 {
			f.exec(fmt.Sprintf("UPDATE users SET name = 'b' WHERE tenant_id = 'rf' AND id = %d", id))
		}
		if id == 50 {
			// and a writer of other rows from now until the end: the
			// failover happens under load (from the first held row on,
			// so that with MIN_REPLICAS the batch that waits holds it)
			stopLoad := startLoad(t, f.pgURL)
			defer stopLoad()
		}
	}
	gone := func(c *redis.Client, keys []string) []string {
		var out []string
		for _, k := range keys {
			if c.Exists(ctx, k).Val() == 0 {
				out = append(out, k)
			}
		}
		return out
	}
	if minReplicas == 0 {
		eventually(t, waitLong, "every held key deleted on the master", func() bool { return len(gone(oldc, heldKeys)) == held })
	} else {
		eventually(t, waitLong, "a held key deleted on the master, and WAIT failing", func() bool {
			return len(gone(oldc, heldKeys)) > 0 && d.metric(t, "invalidator_errors_total", `kind="redis"`) >= 2
		})
		if c := f.slotConfirmed(); c > before {
			t.Fatalf("slot confirmed at %s while no replica acknowledged the deletes after %s", c, before)
		}
		if !strings.Contains(d.out.String(), "of 1 replicas acknowledged") {
			t.Errorf("the daemon's log does not say how many replicas acknowledged")
		}
	}
	masterInfo := oldc.Info(ctx, "replication").Val()
	if n := repc.Exists(ctx, heldKeys...).Val(); n != held {
		t.Fatalf("the held replica has %d of %d keys: replication was not held back\n%s", n, held, masterInfo)
	}
	deletedOnOld := gone(oldc, heldKeys)
	t.Logf("held back: %d keys deleted on the master %s, none on the replica; master %s",
		len(deletedOnOld), old, replOffsets(masterInfo))

	s.Kill(t, old)
	killed := time.Now()
	eventually(t, waitLong, "the replica to see its master gone", func() bool {
		return strings.Contains(repc.Info(ctx, "replication").Val(), "master_link_status:down")
	})
	unpause() // what it had not applied went with the link
	promoted := s.WaitPromoted(t, old, waitLong)
	promotedAt := time.Since(killed)
	if promoted != replicaAddr {
		t.Fatalf("promoted %s, want the replica %s", promoted, replicaAddr)
	}
	newc := repc

	// Rows committed after the failover, their keys cached on the new master.
	const after = 20
	afterKeys := make([]string, after)
	values = values[:0]
	for i := range afterKeys {
		id := 10_000 + i
		afterKeys[i] = key(id)
		values = append(values, fmt.Sprintf("('rf', %d, 'c')", id))
		if err := newc.Set(ctx, afterKeys[i], "cached", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	f.exec("INSERT INTO users(tenant_id, id, name) VALUES " + strings.Join(values, ","))

	if minReplicas > 0 {
		// The new master has no replica: WAIT 1 cannot succeed, and the
		// daemon retries without confirming. Bring the old master back;
		// the sentinels make it a replica of the new one.
		if c := f.slotConfirmed(); c > before {
			t.Fatalf("slot confirmed at %s while the new master has no replica (held rows after %s)", c, before)
		}
		if n := len(gone(newc, afterKeys)); n == after {
			t.Fatalf("every key committed after the failover deleted while the new master has no replica")
		}
		s.Restart(t, old)
		s.WaitReplicas(t, promoted, 1, waitLong)
		t.Logf("old master %s restarted as a replica of %s, %.1fs after the kill", old, promoted, time.Since(killed).Seconds())
	}
	var firstAt time.Duration
	eventually(t, waitLong, "every key committed after the failover deleted on the new master", func() bool {
		n := len(gone(newc, afterKeys))
		if n > 0 && firstAt == 0 {
			firstAt = time.Since(killed)
		}
		return n == after
	})
	f.sync() // everything committed before is applied
	resurrected := len(deletedOnOld) - len(gone(newc, deletedOnOld))
	t.Logf("min_replicas=%d: %d of %d keys deleted on the old master resurrected on the new one; promotion %.1fs after the kill, first invalidation on the new master %.1fs after it; errors_total{kind=redis} %v",
		minReplicas, resurrected, len(deletedOnOld), promotedAt.Seconds(), firstAt.Seconds(), d.metric(t, "invalidator_errors_total", `kind="redis"`))
	switch {
	case minReplicas == 0 && resurrected == 0:
		t.Errorf("no key resurrected with min_replicas=0: the test did not hold replication back")
	case minReplicas > 0 && resurrected > 0:
		t.Errorf("%d keys resurrected with min_replicas=%d", resurrected, minReplicas)
	}
	if minReplicas > 0 {
		if left := held - len(gone(newc, heldKeys)); left > 0 {
			t.Errorf("%d held keys still on the new master", left)
		}
	}
	if d.exited() {
		t.Fatalf("the daemon exited: %v", d.err)
	}
}

// replOffsets is the offsets of an INFO replication reply, for the log.
func replOffsets(info string) string {
	var out []string
	for _, l := range strings.Split(info, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "master_repl_offset:") || strings.HasPrefix(l, "slave0:") {
			out = append(out, l)
		}
	}
	return strings.Join(out, " ")
}

// startLoad commits single-row inserts of tenant "load" users every few
// milliseconds until the returned function is called (it waits for the
// writer to stop).
func startLoad(t *testing.T, url string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		cancel()
		t.Fatalf("load: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond) // pacing, not synchronisation
		defer tick.Stop()
		for id := 1_000_000; ; id++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := conn.Exec(ctx, fmt.Sprintf("INSERT INTO users(tenant_id, id, name) VALUES ('load', %d, 'x')", id)).ReadAll()
			if err != nil && ctx.Err() == nil {
				t.Errorf("load: %v", err)
				return
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			_ = conn.Close(context.Background())
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestCheck_Sentinel: check names the master the sentinels give and,
// with MIN_REPLICAS, counts its replicas and warns when it has fewer.
func TestCheck_Sentinel(t *testing.T) {
	needIntegration(t)
	s := testsrv.StartRedisSentinel(t, 1)
	master := s.Master(t)
	f := newDatabaseFixture(t, rulesYAML)
	base := append(f.env,
		"INVALIDATOR_REDIS_SENTINEL_ADDRS="+strings.Join(s.SentinelAddrs(), ","),
		"INVALIDATOR_REDIS_SENTINEL_MASTER="+testsrv.SentinelMaster)
	f.env = append(base, "INVALIDATOR_REDIS_MIN_REPLICAS=1")
	_, rep := f.checkReport()
	if !rep.find("redis sentinel", "ok", master+" (3), named by 3 of 3 sentinels") {
		t.Errorf("check does not name the master %s: %+v", master, rep.Checks)
	}
	if !rep.find("redis replicas", "ok", "1 online") || !rep.find("redis", "ok", "reachable") {
		t.Errorf("check does not count 1 replica online: %+v", rep.Checks)
	}
	f.env = append(base, "INVALIDATOR_REDIS_MIN_REPLICAS=2")
	if _, rep := f.checkReport(); !rep.find("redis replicas", "warn", "1 master(s) have fewer") {
		t.Errorf("check does not warn of too few replicas: %+v", rep.Checks)
	}
}
