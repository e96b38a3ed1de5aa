package publisher

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/router"
)

const namespaceRules = `version: 1
channel_prefix: "inv:"
rules:
  - name: settings
    table: public.settings
    keys: ["setting:{id}"]
    channel: "setting:{id}"
    namespace: "settings:v"
  - name: docs
    table: public.docs
    keys: ["t:{tenant_id}:doc:{id}"]
    channel: "doc:{tenant_id}"
    scope: [tenant_id]
    namespace: "t:{tenant_id}:v"
`

// namespaceBatch is a TRUNCATE of public.settings and a transaction of
// public.docs past the key bound, for two tenants.
func namespaceBatch(t *testing.T) []Applied {
	t.Helper()
	rules, err := router.ParseRules("rules.yaml", []byte(namespaceRules))
	if err != nil {
		t.Fatal(err)
	}
	rt := router.New(rules, 10, nil)
	settings := cdc.NewRelation("public.settings", []cdc.Column{{Name: "id", Key: true, TypeOID: 23}})
	docs := cdc.NewRelation("public.docs", []cdc.Column{{Name: "id", Key: true, TypeOID: 23}, {Name: "tenant_id", TypeOID: 25}})
	trunc := rt.NewTxn(1)
	trunc.Add(&cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{settings}})
	trunc.Commit()
	bulk := rt.NewTxn(2)
	for i := range 1000 {
		bulk.Add(&cdc.Change{Op: cdc.OpInsert, Rel: docs, New: cdc.Tuple{
			{Kind: cdc.DatumText, Data: []byte(strconv.Itoa(i))},
			{Kind: cdc.DatumText, Data: []byte("t" + strconv.Itoa(i%2))},
		}})
	}
	bulk.Commit()
	at := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	return []Applied{
		{Txn: trunc, CommitLSN: 100, EndLSN: 150, Xid: 1, CommitTime: at},
		{Txn: bulk, CommitLSN: 200, EndLSN: 250, Xid: 2, CommitTime: at},
	}
}

var cmdstatRE = regexp.MustCompile(`cmdstat_(\w+):calls=(\d+)`)

// commandCalls sums INFO commandstats of every node.
func commandCalls(t *testing.T, nodes []*redis.Client) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, c := range nodes {
		info, err := c.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cmdstatRE.FindAllStringSubmatch(info, -1) {
			n, _ := strconv.Atoi(m[2])
			out[m[1]] += n
		}
	}
	return out
}

func resetStats(t *testing.T, nodes []*redis.Client) {
	t.Helper()
	for _, c := range nodes {
		if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// checkNamespaceApply applies namespaceBatch through p and checks that
// the wide forms were three INCRs and not one SCAN, that each version key
// was bumped once, and that messages and journal entries name them.
func checkNamespaceApply(t *testing.T, rdb redis.UniversalClient, nodes []*redis.Client, p *Publisher) {
	t.Helper()
	ctx := context.Background()
	batch := namespaceBatch(t)
	if err := rdb.Set(ctx, "t:t0:v", "41", 0).Err(); err != nil {
		t.Fatal(err)
	}
	sub := rdb.PSubscribe(ctx, "inv:*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	resetStats(t, nodes)
	st, err := p.Apply(ctx, batch)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	calls := commandCalls(t, nodes)
	if calls["incr"] != 3 || calls["scan"] != 0 {
		t.Errorf("commands: %d INCR and %d SCAN, want 3 and 0 (%v)", calls["incr"], calls["scan"], calls)
	}
	for key, want := range map[string]string{"settings:v": "1", "t:t0:v": "42", "t:t1:v": "1"} {
		if got, err := rdb.Get(ctx, key).Result(); err != nil || got != want {
			t.Errorf("GET %s = %q, %v; want %q", key, got, err, want)
		}
	}
	var bumped []string
	for range st.Messages {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := sub.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var msg struct {
			Namespaces []string `json:"namespaces"`
		}
		if err := json.Unmarshal([]byte(m.Payload), &msg); err != nil {
			t.Fatalf("%s: %v", m.Payload, err)
		}
		bumped = append(bumped, msg.Namespaces...)
	}
	slices.Sort(bumped)
	if want := []string{"settings:v", "t:t0:v", "t:t1:v"}; !slices.Equal(bumped, want) {
		t.Errorf("messages name namespaces %q, want %q", bumped, want)
	}
	entries, err := rdb.XRange(ctx, JournalKey("inv:"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var journal []string
	for _, e := range entries {
		var ns []string
		if s, _ := e.Values["namespaces"].(string); s != "" {
			if err := json.Unmarshal([]byte(s), &ns); err != nil {
				t.Fatalf("journal namespaces %q: %v", s, err)
			}
		}
		journal = append(journal, ns...)
	}
	slices.Sort(journal)
	if want := []string{"settings:v", "t:t0:v", "t:t1:v"}; !slices.Equal(journal, want) {
		t.Errorf("journal entries name namespaces %q, want %q", journal, want)
	}
}

// A TRUNCATE and a transaction past the key bound on namespaced rules are
// INCRs of their version keys and no SCAN, with both writers of a single
// Redis.
func TestApply_Namespaces(t *testing.T) {
	for _, direct := range []bool{true, false} {
		t.Run("direct="+strconv.FormatBool(direct), func(t *testing.T) {
			rdb := queueRedis(t)
			p := New(rdb, Config{ChannelPrefix: "inv:", Journal: true})
			defer p.Close()
			if !direct {
				p.direct = nil
			}
			checkNamespaceApply(t, rdb, []*redis.Client{rdb}, p)
		})
	}
}

func TestApply_NamespacesCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	cl := testsrv.StartRedisCluster(t, 3)
	rdb := cl.Client(t)
	var nodes []*redis.Client
	for _, a := range cl.Addrs() {
		nodes = append(nodes, cl.NodeClient(t, a))
	}
	checkNamespaceApply(t, rdb, nodes, New(rdb, Config{ChannelPrefix: "inv:", Journal: true}))
}
