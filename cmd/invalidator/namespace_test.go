package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/subscriber"
)

const namespaceRulesYAML = `version: 1
channel_prefix: "cache:invalidate:"
rules:
  - name: shard-structured
    table: public.shards
    keys: ["tenant:{tenant_id}:shard:{id}:structured"]
    channel: "shard:{tenant_id}:{id}"
    scope: [tenant_id]
    namespace: "tenant:{tenant_id}:v"
  - name: user-profile
    table: users
    keys: ["tenant:{tenant_id}:user:{id}:profile"]
    channel: "user:{tenant_id}:{id}"
    namespace: "users:v"
  - name: sentinel
    table: sentinel
    channel: "sentinel:{id}"
`

var cmdstatCalls = regexp.MustCompile(`cmdstat_(\w+):calls=(\d+)`)

// commandCalls returns INFO commandstats' calls by command since the last
// CONFIG RESETSTAT.
func commandCalls(t *testing.T, rdb *redis.Client) map[string]int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, m := range cmdstatCalls.FindAllStringSubmatch(info, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out
}

// TestRun_NamespaceWideForm: with 10,000 unrelated keys in Redis, the wide
// form of a rule with a namespace is one INCR and no SCAN, both for a
// TRUNCATE (a global namespace) and for a streamed transaction past the
// key bound (one INCR per tenant); readers through the Filler miss after
// the bump; a namespace with placeholders cannot be rendered by TRUNCATE,
// which falls back to SCAN; replay re-INCRs what the journal lists.
func TestRun_NamespaceWideForm(t *testing.T) {
	f := newDatabaseFixture(t, namespaceRulesYAML).withRedis("INVALIDATOR_MAX_KEYS_PER_TXN=50")
	ctx := context.Background()
	f.startReady()
	pipe := f.rdb.Pipeline()
	for i := 0; i < 10000; i += 1000 {
		var kv []any
		for j := i; j < i+1000; j++ {
			kv = append(kv, "unrelated:"+strconv.Itoa(j), "v")
		}
		pipe.MSet(ctx, kv...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	fill, err := subscriber.NewFiller(f.rdb, subscriber.FillConfig{TTL: time.Minute, LeaseTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var loads atomic.Int64
	read := func(ns, key, value string) string {
		t.Helper()
		v, err := fill.GetInNamespace(ctx, ns, key, func(context.Context) ([]byte, error) {
			loads.Add(1)
			return []byte(value), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	resetStats := func() {
		t.Helper()
		if err := f.rdb.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("truncate, global namespace", func(t *testing.T) {
		read("users:v", "tenant:t1:user:1:profile", "before")
		if v := read("users:v", "tenant:t1:user:1:profile", "x"); v != "before" {
			t.Fatalf("second read = %q, want the stored value", v)
		}
		version := f.rdb.Get(ctx, "users:v").Val()
		resetStats()
		f.exec(`TRUNCATE users`)
		f.sync()
		calls := commandCalls(t, f.rdb)
		if calls["incr"] != 1 || calls["scan"] != 0 {
			t.Errorf("TRUNCATE of a rule with a global namespace: %d INCR, %d SCAN; want 1 and 0 (%v)", calls["incr"], calls["scan"], calls)
		}
		if after := f.rdb.Get(ctx, "users:v").Val(); after == version {
			t.Errorf("users:v = %s, not bumped", after)
		}
		if v := read("users:v", "tenant:t1:user:1:profile", "after"); v != "after" {
			t.Errorf("read after the bump = %q, want a miss that loads", v)
		}
		msgs := f.sub.on("cache:invalidate:user:*:*")
		if len(msgs) != 1 || fmt.Sprint(msgs[0].Msg["namespaces"]) != "[users:v]" || msgs[0].Msg["op"] != "truncate" {
			t.Errorf("want one truncate message naming users:v, got %+v", msgs)
		}
	})

	t.Run("streamed transaction past the bound", func(t *testing.T) {
		for _, tenant := range []string{"t1", "t2"} {
			read("tenant:"+tenant+":v", "tenant:"+tenant+":shard:1:structured", "before")
		}
		read("tenant:t3:v", "tenant:t3:shard:1:structured", "t3")
		resetStats()
		// 2,000 rows of 200 bytes: streamed (logical_decoding_work_mem
		// 64kB), so past the key bound whatever bounds a transaction that
		// is not
		f.exec(`INSERT INTO shards SELECT CASE WHEN g % 2 = 0 THEN 't1' ELSE 't2' END, g, repeat('p', 200), 't' FROM generate_series(1, 2000) g`)
		f.sync()
		calls := commandCalls(t, f.rdb)
		if calls["incr"] != 2 || calls["scan"] != 0 {
			t.Errorf("a transaction past the key bound: %d INCR, %d SCAN; want 2 (t1, t2) and 0 (%v)", calls["incr"], calls["scan"], calls)
		}
		for _, tenant := range []string{"t1", "t2"} {
			if v := read("tenant:"+tenant+":v", "tenant:"+tenant+":shard:1:structured", "after"); v != "after" {
				t.Errorf("%s read after the bump = %q, want a miss", tenant, v)
			}
		}
		if v := read("tenant:t3:v", "tenant:t3:shard:1:structured", "x"); v != "t3" {
			t.Errorf("t3, not in the transaction, read %q: its namespace was bumped", v)
		}
		var named []string
		for _, m := range f.sub.on("cache:invalidate:shard:t1:*") {
			named = append(named, fmt.Sprint(m.Msg["namespaces"]))
		}
		if !strings.Contains(strings.Join(named, " "), "tenant:t1:v") {
			t.Errorf("the wide message of t1 names namespaces %q, want tenant:t1:v", named)
		}
	})

	t.Run("truncate, namespace with placeholders", func(t *testing.T) {
		f.set("tenant:t9:shard:5:structured")
		resetStats()
		f.exec(`TRUNCATE shards`)
		f.sync()
		calls := commandCalls(t, f.rdb)
		if calls["incr"] != 0 || calls["scan"] == 0 {
			t.Errorf("TRUNCATE of a rule whose namespace has placeholders: %d INCR, %d SCAN; want 0 and the SCAN", calls["incr"], calls["scan"])
		}
		if f.exists("tenant:t9:shard:5:structured") {
			t.Error("TRUNCATE's SCAN left a key of the rule")
		}
		if n, _ := f.rdb.DBSize(ctx).Result(); n < 10000 {
			t.Errorf("%d keys left, want the 10,000 unrelated ones", n)
		}
	})

	t.Run("replay bumps again", func(t *testing.T) {
		before, _ := f.rdb.Get(ctx, "users:v").Int64()
		code, out, errOut := f.cli("replay", "--since", "1h")
		if code != 0 {
			t.Fatalf("replay: exit %d\n%s%s", code, out, errOut)
		}
		if after, _ := f.rdb.Get(ctx, "users:v").Int64(); after <= before {
			t.Errorf("users:v = %d after replay, was %d: not bumped again", after, before)
		}
		code, out, _ = f.cli("replay", "--since", "1h", "--dry-run")
		if code != 0 || !strings.Contains(out, "would bump    namespace users:v") {
			t.Errorf("replay --dry-run: exit %d, does not show the bump:\n%s", code, out)
		}
	})
}

// check warns when Redis may evict the version keys of namespaced rules.
func TestCheck_NamespaceEviction(t *testing.T) {
	f := newDatabaseFixture(t, namespaceRulesYAML).withRedis()
	ctx := context.Background()
	for _, policy := range []string{"noeviction", "allkeys-lru"} {
		if err := f.rdb.ConfigSet(ctx, "maxmemory-policy", policy).Err(); err != nil {
			t.Fatal(err)
		}
		_, out, errOut := f.cli("check", "--json")
		var c checkJSON
		if err := json.Unmarshal([]byte(out), &c); err != nil {
			t.Fatalf("check --json: %v\n%s%s", err, out, errOut)
		}
		warned := c.find("redis", "warn", "maxmemory-policy allkeys-lru may evict the version keys")
		if warned != (policy == "allkeys-lru") {
			t.Errorf("maxmemory-policy %s: warned %v\n%s", policy, warned, out)
		}
	}
}

// On a Redis Cluster a namespaced wide form is one INCR, on the version
// key's master, and no SCAN on any master; Filler reads (version and key
// on different nodes) miss after it.
func TestCluster_NamespaceWideForm(t *testing.T) {
	needIntegration(t)
	cluster := testsrv.StartRedisCluster(t, 3)
	cc := cluster.Client(t)
	f := newClusterFixture(t, cluster, cc, namespaceRulesYAML, "INVALIDATOR_MAX_KEYS_PER_TXN=50")
	f.startReady()
	ctx := context.Background()
	var nodes []*redis.Client
	for _, a := range cluster.Addrs() {
		nodes = append(nodes, cluster.NodeClient(t, a))
	}
	calls := func() map[string]int {
		total := map[string]int{}
		for _, n := range nodes {
			for k, v := range commandCalls(t, n) {
				total[k] += v
			}
		}
		return total
	}
	fill, err := subscriber.NewFiller(cc, subscriber.FillConfig{TTL: time.Minute, LeaseTTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	read := func(ns, key, value string) string {
		t.Helper()
		v, err := fill.GetInNamespace(ctx, ns, key, func(context.Context) ([]byte, error) { return []byte(value), nil })
		if err != nil {
			t.Fatal(err)
		}
		return string(v)
	}
	var keys []string
	for i := range 12 {
		key := fmt.Sprintf("tenant:t%d:user:1:profile", i)
		keys = append(keys, key)
		read("users:v", key, "before")
	}
	if m := byMaster(t, cc, append(slices.Clone(keys), "users:v")); len(m) != 3 {
		t.Fatalf("the keys should live on all 3 masters, got %d", len(m))
	}
	for _, n := range nodes {
		if err := n.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	f.exec(`TRUNCATE users`)
	f.sync()
	if c := calls(); c["incr"] != 1 || c["scan"] != 0 {
		t.Errorf("TRUNCATE on a cluster: %d INCR, %d SCAN over the masters; want 1 and 0", c["incr"], c["scan"])
	}
	for _, key := range keys {
		if v := read("users:v", key, "after"); v != "after" {
			t.Errorf("%s after the bump = %q, want a miss", key, v)
		}
	}
}
