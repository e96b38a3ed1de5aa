package publisher

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/router"
)

// earlyTxn renders one transaction of rows over three tenants, splitting
// it as the stream does while it arrives: its early parts, then itself.
func earlyTxn(t *testing.T, rows int) (early []Applied, final Applied) {
	t.Helper()
	rt, row := queueRouter(t, 4*rows)
	commitTime := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	txn := rt.NewTxn(42)
	for i := range rows {
		txn.Add(row("t"+strconv.Itoa(i%3), i))
		if part, ok := txn.Early(); ok {
			early = append(early, Applied{Txn: part, Xid: 42, CommitLSN: 0x500, CommitTime: commitTime, Early: true})
		}
	}
	txn.Commit()
	return early, Applied{Txn: txn, Xid: 42, CommitLSN: 0x500, EndLSN: 0x550, CommitTime: commitTime}
}

// An early part deletes its keys and nothing else: no message, no journal
// entry. The transaction then deletes only the rest, and publishes and
// journals every key, on both ways of writing to Redis.
func TestApply_Early(t *testing.T) {
	rdb := queueRedis(t)
	early, final := earlyTxn(t, router.EarlyKeys+500)
	if len(early) != 1 {
		t.Fatalf("%d early parts, want 1", len(early))
	}
	res := final.Txn.Result()
	earlyKeys := early[0].Txn.Result().Keys
	if res.Unlinked != len(earlyKeys) || len(res.ToUnlink()) == 0 {
		t.Fatalf("unlinked %d of %d keys, early part %d", res.Unlinked, len(res.Keys), len(earlyKeys))
	}
	ctx := context.Background()
	cfg := Config{ChannelPrefix: "inv:", Journal: true}
	direct := New(rdb, cfg)
	defer direct.Close()
	viaGoRedis := New(rdb, cfg)
	viaGoRedis.direct = nil
	for name, p := range map[string]*Publisher{"direct": direct, "go-redis": viaGoRedis} {
		t.Run(name, func(t *testing.T) {
			if err := rdb.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			for _, k := range res.Keys {
				if err := rdb.Set(ctx, k, "cached", 0).Err(); err != nil {
					t.Fatal(err)
				}
			}
			left := func() []string {
				t.Helper()
				var out []string
				for _, k := range res.Keys {
					if n, err := rdb.Exists(ctx, k).Result(); err != nil {
						t.Fatal(err)
					} else if n == 1 {
						out = append(out, k)
					}
				}
				return out
			}
			journal := func() int64 {
				t.Helper()
				n, err := rdb.XLen(ctx, JournalKey("inv:")).Result()
				if err != nil {
					t.Fatal(err)
				}
				return n
			}

			st, err := p.Apply(ctx, early)
			if err != nil {
				t.Fatalf("apply the early part: %v", err)
			}
			if st.Messages != 0 || st.KeysDeleted != int64(len(earlyKeys)) || journal() != 0 {
				t.Errorf("early part: %+v, %d journal entries; want %d keys deleted, no message, no entry", st, journal(), len(earlyKeys))
			}
			if got := left(); !slices.Equal(got, res.ToUnlink()) {
				t.Errorf("after the early part %d keys are left, want the %d not handed on", len(got), len(res.ToUnlink()))
			}

			// cached again meanwhile (from committed data): the
			// transaction has nothing more to do with it
			recached := earlyKeys[0]
			if err := rdb.Set(ctx, recached, "fresh", 0).Err(); err != nil {
				t.Fatal(err)
			}
			sub := rdb.PSubscribe(ctx, "inv:*")
			defer sub.Close()
			if _, err := sub.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			st, err = p.Apply(ctx, []Applied{final})
			if err != nil {
				t.Fatalf("apply the transaction: %v", err)
			}
			if st.Messages != 3 || st.KeysDeleted != int64(len(res.ToUnlink())) {
				t.Errorf("transaction: %+v, want 3 messages and %d keys deleted", st, len(res.ToUnlink()))
			}
			if got := left(); !slices.Equal(got, []string{recached}) {
				t.Errorf("keys left %.200q, want only %q", got, recached)
			}
			keysListed := 0
			for range 3 {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				m, err := sub.ReceiveMessage(rctx)
				cancel()
				if err != nil {
					t.Fatal(err)
				}
				keysListed += strings.Count(m.Payload, `"tenant:`)
			}
			if keysListed != len(res.Keys) {
				t.Errorf("messages list %d keys, want all %d", keysListed, len(res.Keys))
			}
			entries, err := rdb.XRange(ctx, JournalKey("inv:"), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				t.Fatalf("%d journal entries, want 1", len(entries))
			}
			if k, _ := entries[0].Values["keys"].(string); strings.Count(k, `"tenant:`) != len(res.Keys) {
				t.Errorf("journal entry lists %d keys, want all %d", strings.Count(k, `"tenant:`), len(res.Keys))
			}
		})
	}
}

// An early part confirms nothing: a batch confirms its last transaction.
func TestLastEnd(t *testing.T) {
	txn := Applied{CommitLSN: 0x100, EndLSN: 0x108}
	part := Applied{CommitLSN: 0x200, Early: true}
	for _, c := range []struct {
		batch []Applied
		want  cdc.LSN
		ok    bool
	}{
		{[]Applied{part}, 0, false},
		{[]Applied{part, part}, 0, false},
		{[]Applied{txn, part}, 0x108, true},
		{[]Applied{part, txn}, 0x108, true},
	} {
		if got, ok := lastEnd(c.batch); got != c.want || ok != c.ok {
			t.Errorf("lastEnd(%+v) = %v, %v; want %v, %v", c.batch, got, ok, c.want, c.ok)
		}
	}
}
