package publisher

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/router"
)

const queueRules = `version: 1
channel_prefix: "inv:"
rules:
  - name: shard
    table: public.shards
    keys: ["tenant:{tenant_id}:shard:{id}", "tenant:{tenant_id}:shards"]
    channel: "shard:{tenant_id}"
    scope: [tenant_id]
`

func queueRedis(t *testing.T) *redis.Client {
	t.Helper()
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	srv, err := testsrv.NewRedisWith(testsrv.RedisOptions{Args: []string{"--appendonly", "no"}})
	if err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv.Client(t)
}

// queueRouter returns a router for queueRules with the key bound maxKeys,
// and a function making an UPDATE of one public.shards row.
func queueRouter(t *testing.T, maxKeys int) (*router.Router, func(tenant string, id int) *cdc.Change) {
	t.Helper()
	rules, err := router.ParseRules("rules.yaml", []byte(queueRules))
	if err != nil {
		t.Fatal(err)
	}
	rel := cdc.NewRelation("public.shards", []cdc.Column{
		{Name: "tenant_id", Key: true, TypeOID: 25}, {Name: "id", Key: true, TypeOID: 23}, {Name: "payload", TypeOID: 25},
	})
	return router.New(rules, maxKeys, nil), func(tenant string, id int) *cdc.Change {
		return &cdc.Change{Op: cdc.OpUpdate, Rel: rel, New: cdc.Tuple{
			{Kind: cdc.DatumText, Data: []byte(tenant)},
			{Kind: cdc.DatumText, Data: []byte(strconv.Itoa(id))},
			{Kind: cdc.DatumText, Data: []byte("p")},
		}}
	}
}

// queueBatch is single-row transactions, one of 3,000 rows (its journal
// entry's keys are written past the buffer, and it has too many messages
// to repeat in the journal), and one that changes nothing cached.
func queueBatch(t *testing.T) ([]Applied, []string) {
	t.Helper()
	rt, row := queueRouter(t, 0)
	other := cdc.NewRelation("public.other", []cdc.Column{{Name: "id", Key: true, TypeOID: 23}})
	var batch []Applied
	var keys []string
	add := func(txn *router.Txn) {
		txn.Commit()
		n := len(batch) + 1
		batch = append(batch, Applied{Txn: txn, CommitLSN: cdc.LSN(n * 100), EndLSN: cdc.LSN(n*100 + 50), Xid: uint32(1000 + n),
			CommitTime: time.Date(2026, 11, 22, 10, 0, 0, n*1000, time.UTC)})
		keys = append(keys, txn.Result().Keys...)
	}
	for i := range 20 {
		txn := rt.NewTxn(uint32(i))
		txn.Add(row("t"+strconv.Itoa(i%3), i))
		add(txn)
	}
	big := rt.NewTxn(99)
	for i := range 3000 {
		big.Add(row("t"+strconv.Itoa(i%1100), i)) // 1,100 channels
	}
	add(big)
	none := rt.NewTxn(100)
	none.Add(&cdc.Change{Op: cdc.OpInsert, Rel: other, New: cdc.Tuple{{Kind: cdc.DatumText, Data: []byte("1")}}})
	add(none)
	return batch, keys
}

// applied is what an Apply did in Redis.
type applied struct {
	stats    Stats
	messages []string // channel, then payload, in the order received
	journal  []map[string]any
	left     []string // the batch's keys still there
}

func applyAndObserve(t *testing.T, rdb *redis.Client, p *Publisher, batch []Applied, keys []string) applied {
	t.Helper()
	ctx := context.Background()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := rdb.Set(ctx, k, "cached", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Set(ctx, "tenant:unrelated", "cached", 0).Err(); err != nil {
		t.Fatal(err)
	}
	sub := rdb.PSubscribe(ctx, "inv:*")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription is in place
		t.Fatal(err)
	}
	var got applied
	var err error
	if got.stats, err = p.Apply(ctx, batch); err != nil {
		t.Fatalf("apply: %v", err)
	}
	for range got.stats.Messages {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		m, err := sub.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(got.messages)/2, got.stats.Messages, err)
		}
		got.messages = append(got.messages, m.Channel, m.Payload)
	}
	entries, err := rdb.XRange(ctx, JournalKey("inv:"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		got.journal = append(got.journal, e.Values)
	}
	for _, k := range append(slices.Clip(keys), "tenant:unrelated") {
		if n, err := rdb.Exists(ctx, k).Result(); err != nil {
			t.Fatal(err)
		} else if n == 1 {
			got.left = append(got.left, k)
		}
	}
	return got
}

// The Publisher's own RESP writer (a single Redis) and the go-redis
// pipeline (what a Redis Cluster uses) leave Redis in the same state and
// send the same messages and journal entries.
func TestApply_DirectAsGoRedis(t *testing.T) {
	rdb := queueRedis(t)
	batch, keys := queueBatch(t)
	cfg := Config{ChannelPrefix: "inv:", Journal: true, UnlinkChunk: 100, Server: cdc.Server{SystemID: "7301", Database: "app"}}

	direct := New(rdb, cfg)
	defer direct.Close()
	if direct.direct == nil {
		t.Fatal("a Publisher on a single Redis does not write RESP itself")
	}
	viaGoRedis := New(rdb, cfg)
	viaGoRedis.direct = nil

	d := applyAndObserve(t, rdb, direct, batch, keys)
	g := applyAndObserve(t, rdb, viaGoRedis, batch, keys)

	distinct := len(slices.Compact(slices.Sorted(slices.Values(keys))))
	if d.stats.KeysDeleted != int64(distinct) {
		t.Errorf("direct: %d keys deleted, want %d", d.stats.KeysDeleted, distinct)
	}
	if !slices.Equal(d.left, []string{"tenant:unrelated"}) {
		t.Errorf("direct: keys left %v, want only tenant:unrelated", d.left)
	}
	if want := 20 + 1100; d.stats.Messages != want {
		t.Errorf("direct: %d messages, want %d", d.stats.Messages, want)
	}
	if len(d.journal) != 21 {
		t.Errorf("direct: %d journal entries, want 21 (none for the transaction without keys)", len(d.journal))
	}
	if d.stats != g.stats {
		t.Errorf("stats: direct %+v, go-redis %+v", d.stats, g.stats)
	}
	if !slices.Equal(d.left, g.left) {
		t.Errorf("keys left: direct %v, go-redis %v", d.left, g.left)
	}
	if !slices.Equal(d.messages, g.messages) {
		t.Errorf("messages differ: direct %d, go-redis %d", len(d.messages), len(g.messages))
	}
	for _, e := range d.journal {
		if e["system_id"] != "7301" || e["database"] != "app" {
			t.Errorf("a journal entry does not name its server: %.200v", e)
			break
		}
	}
	if fmt.Sprint(d.journal) != fmt.Sprint(g.journal) {
		t.Errorf("journal entries differ:\ndirect   %.600v\ngo-redis %.600v", d.journal, g.journal)
	}
	// the big transaction's entry carries its 3,000 keys
	if len(d.journal) == 21 {
		if k, _ := d.journal[20]["keys"].(string); strings.Count(k, `"tenant:`) != 3000+1100 {
			t.Errorf("big entry's keys: %d, want 4100", strings.Count(k, `"tenant:`))
		}
	}
}

// A batch of more commands than one round trip carries (maxPipeline) is
// written and read in several, in order, as go-redis's pipeline does it.
func TestApply_DirectManyRoundTrips(t *testing.T) {
	rdb := queueRedis(t)
	batch, keys := queueBatch(t)
	one := batch[:20] // the single-row transactions
	for len(batch) < 3*maxPipeline {
		batch = append(batch, one...)
	}
	batch = batch[len(one)+2:] // from the third repeat's start: no big transaction
	cfg := Config{ChannelPrefix: "inv:", Journal: true}
	direct := New(rdb, cfg)
	defer direct.Close()
	viaGoRedis := New(rdb, cfg)
	viaGoRedis.direct = nil

	d := applyAndObserve(t, rdb, direct, batch, keys[:20])
	g := applyAndObserve(t, rdb, viaGoRedis, batch, keys[:20])
	// a message and a journal entry a transaction: past maxPipeline twice
	if len(batch) <= maxPipeline || d.stats.Messages != len(batch) || len(d.journal) != len(batch) {
		t.Fatalf("direct: %d messages and %d journal entries for %d transactions", d.stats.Messages, len(d.journal), len(batch))
	}
	if !slices.Equal(d.left, []string{"tenant:unrelated"}) {
		t.Errorf("direct: keys left %v, want only tenant:unrelated", d.left)
	}
	if d.stats != g.stats || !slices.Equal(d.messages, g.messages) || fmt.Sprint(d.journal) != fmt.Sprint(g.journal) {
		t.Errorf("direct and go-redis differ: stats %+v and %+v, %d and %d messages", d.stats, g.stats, len(d.messages), len(g.messages))
	}
	// every reply was read: the next Apply on the same connection reads its
	// own, here the error of its XADD
	ctx := context.Background()
	if err := rdb.Set(ctx, JournalKey("inv:"), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Apply(ctx, one[:1]); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Errorf("the next Apply: %v, want its own WRONGTYPE error", err)
	}
}

// An error reply fails the Apply and names the command; the commands
// before it were applied, and the next Apply, on a new connection, applies
// the batch once the cause is gone.
func TestApply_DirectErrorReply(t *testing.T) {
	rdb := queueRedis(t)
	batch, keys := queueBatch(t)
	batch = batch[:3]
	ctx := context.Background()
	p := New(rdb, Config{ChannelPrefix: "inv:", Journal: true})
	defer p.Close()
	if err := rdb.Set(ctx, JournalKey("inv:"), "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, keys[0], "cached", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := p.Apply(ctx, batch)
	if err == nil || !strings.Contains(err.Error(), "XADD") || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("apply with the journal key of the wrong type: %v, want a WRONGTYPE error of XADD", err)
	}
	if p.conn != nil {
		t.Error("the connection was kept after a failed Apply")
	}
	if n, _ := rdb.Exists(ctx, keys[0]).Result(); n != 0 {
		t.Error("the keys queued before the failed command were not deleted")
	}
	if err := rdb.Del(ctx, JournalKey("inv:")).Err(); err != nil {
		t.Fatal(err)
	}
	st, err := p.Apply(ctx, batch)
	if err != nil {
		t.Fatalf("apply again: %v", err)
	}
	if n, _ := rdb.XLen(ctx, JournalKey("inv:")).Result(); n != 3 || st.Messages != 3 {
		t.Errorf("second apply: %d journal entries and %d messages, want 3 and 3", n, st.Messages)
	}
}

// A master demoted behind the same address answers READONLY: the failed
// Apply drops the connection, and the next one reaches the new master.
func TestApply_DirectReadonlyFailover(t *testing.T) {
	a, b := queueRedis(t), queueRedis(t)
	ctx := context.Background()
	var toB atomic.Bool
	var d net.Dialer
	rdb := redis.NewClient(&redis.Options{
		Addr: a.Options().Addr,
		Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
			if toB.Load() {
				return d.DialContext(ctx, network, b.Options().Addr)
			}
			return d.DialContext(ctx, network, a.Options().Addr)
		},
	})
	defer rdb.Close()
	batch, keys := queueBatch(t)
	batch = batch[:3]
	p := New(rdb, Config{ChannelPrefix: "inv:", Journal: true})
	defer p.Close()
	if _, err := p.Apply(ctx, batch); err != nil {
		t.Fatalf("apply on the first master: %v", err)
	}
	host, port, _ := net.SplitHostPort(b.Options().Addr)
	if err := a.ReplicaOf(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	toB.Store(true)
	if err := b.Set(ctx, keys[0], "cached", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(ctx, batch); err == nil || !strings.Contains(err.Error(), "READONLY") {
		t.Fatalf("apply on the demoted master: %v, want READONLY", err)
	}
	if _, err := p.Apply(ctx, batch); err != nil {
		t.Fatalf("apply after READONLY: %v, want it applied on the new master", err)
	}
	if n, _ := b.Exists(ctx, keys[0]).Result(); n != 0 {
		t.Error("the key on the new master was not deleted")
	}
}

// A connection the server closed while it was idle costs no failed
// Apply: the Publisher dials again and applies at once.
func TestApply_DirectRedialsAfterIdleClose(t *testing.T) {
	rdb := queueRedis(t)
	ctx := context.Background()
	batch, keys := queueBatch(t)
	batch = batch[:3]
	p := New(rdb, Config{ChannelPrefix: "inv:"})
	defer p.Close()
	if _, err := p.Apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	first := p.conn
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, keys[0], "cached", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Apply(ctx, batch); err != nil {
		t.Fatalf("apply after the server closed the idle connection: %v", err)
	}
	if p.conn == first {
		t.Error("the Publisher kept the closed connection")
	}
	if n, _ := rdb.Exists(ctx, keys[0]).Result(); n != 0 {
		t.Error("the key was not deleted")
	}
}
