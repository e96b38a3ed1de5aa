package subscriber_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cachewire/invalidator/subscriber"
)

// getOrLoadAcross calls GetOrLoad for key with a load that runs between
// before the invalidation and returns "loaded", and reports whether the
// value was stored.
func getOrLoadAcross(t *testing.T, c *subscriber.Cache, key string, invalidate func()) bool {
	t.Helper()
	v, err := c.GetOrLoad(context.Background(), key, func(context.Context) (any, error) {
		invalidate()
		return "loaded", nil
	})
	if err != nil || v != "loaded" {
		t.Fatalf("GetOrLoad = %v, %v; want the loaded value", v, err)
	}
	got, ok := c.Get(key)
	if ok && got != "loaded" {
		t.Fatalf("Get = %v after GetOrLoad", got)
	}
	return ok
}

func TestCache_GetOrLoadVoidsOnlyItsKey(t *testing.T) {
	const key = `tenant:t1:shard:4*2:structured` // a '*' of its own: matched literally by an escaped pattern
	msg := func(keys []string, patterns ...string) subscriber.Message {
		return subscriber.Message{V: subscriber.MessageVersion, Op: subscriber.OpUpdate, Keys: keys, Patterns: patterns}
	}
	stored := subscriber.CacheFillStats{Fills: 1}
	byKey := subscriber.CacheFillStats{FillsVoided: 1, VoidedByKey: 1}
	byPattern := subscriber.CacheFillStats{FillsVoided: 1, VoidedByPattern: 1}
	byResync := subscriber.CacheFillStats{FillsVoided: 1, VoidedByResync: 1}
	for _, tt := range []struct {
		name       string
		invalidate func(c *subscriber.Cache)
		want       subscriber.CacheFillStats
	}{
		{"nothing", func(*subscriber.Cache) {}, stored},
		{"exact key", func(c *subscriber.Cache) { c.Apply(msg([]string{"other", key})) }, byKey},
		{"matching pattern", func(c *subscriber.Cache) { c.Apply(msg(nil, "tenant:t1:shard:*")) }, byPattern},
		{"escaped pattern of the key", func(c *subscriber.Cache) { c.Apply(msg(nil, `tenant:t1:shard:4\*2:structured`)) }, byPattern},
		{"resync", func(c *subscriber.Cache) { c.Resync(subscriber.ReasonReconnect) }, byResync},
		{"clear", func(c *subscriber.Cache) { c.Clear() }, byResync},
		{"delete", func(c *subscriber.Cache) { c.Delete(key) }, byKey},
		{"unknown message version", func(c *subscriber.Cache) {
			c.Apply(subscriber.Message{V: subscriber.MessageVersion + 1, Keys: []string{"other"}})
		}, byResync},
		{"key and pattern: the key counts", func(c *subscriber.Cache) {
			c.Apply(msg(nil, "tenant:*"))
			c.Apply(msg([]string{key}))
		}, byKey},
		{"key and resync: the resync counts", func(c *subscriber.Cache) {
			c.Apply(msg([]string{key}))
			c.Resync(subscriber.ReasonReconnect)
		}, byResync},
		{"another key", func(c *subscriber.Cache) { c.Apply(msg([]string{"tenant:t1:shard:42:structured"})) }, stored},
		{"a pattern of another key", func(c *subscriber.Cache) { c.Apply(msg(nil, "tenant:t2:*", `tenant:t1:shard:4\*3*`)) }, stored},
		{"delete of another key", func(c *subscriber.Cache) { c.Delete("other") }, stored},
		{"heartbeat", func(c *subscriber.Cache) { c.Apply(subscriber.Message{V: 1, Op: subscriber.OpHeartbeat}) }, stored},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := subscriber.NewCache(10)
			if got, want := getOrLoadAcross(t, c, key, func() { tt.invalidate(c) }), tt.want.Fills == 1; got != want {
				t.Fatalf("stored = %v, want %v", got, want)
			}
			if st := c.FillStats(); st != tt.want {
				t.Errorf("FillStats = %+v, want %+v", st, tt.want)
			}
		})
	}
}

// TestCache_GetOrLoadVersusSetIfGeneration: an invalidation of another key
// voids SetIfGeneration's fill (kept as it was), not GetOrLoad's.
func TestCache_GetOrLoadVersusSetIfGeneration(t *testing.T) {
	c := subscriber.NewCache(10)
	other := subscriber.Message{V: 1, Op: subscriber.OpUpdate, Keys: []string{"other"}}
	gen := c.Generation()
	c.Apply(other)
	if c.SetIfGeneration(gen, "a", "v") {
		t.Fatal("SetIfGeneration stored across an invalidation of another key; its check was meant to stay coarse")
	}
	if !getOrLoadAcross(t, c, "b", func() { c.Apply(other) }) {
		t.Fatal("GetOrLoad's fill was voided by an invalidation of another key")
	}
}

func TestCache_GetOrLoadHitAndError(t *testing.T) {
	c := subscriber.NewCache(10)
	c.Set("k", "cached")
	v, err := c.GetOrLoad(context.Background(), "k", func(context.Context) (any, error) {
		t.Fatal("load called on a hit")
		return nil, nil
	})
	if err != nil || v != "cached" {
		t.Fatalf("GetOrLoad on a hit = %v, %v", v, err)
	}
	boom := errors.New("boom")
	if _, err := c.GetOrLoad(context.Background(), "e", func(context.Context) (any, error) { return "partial", boom }); !errors.Is(err, boom) {
		t.Fatalf("GetOrLoad error = %v, want it to wrap the load's", err)
	}
	if _, ok := c.Get("e"); ok {
		t.Fatal("a failed load's value was stored")
	}
}

// TestCache_GetOrLoadOverlapping: two loads of one key overlap; an
// invalidation during both voids both, and one after the first's store
// voids only the second.
func TestCache_GetOrLoadOverlapping(t *testing.T) {
	c := subscriber.NewCache(10)
	inv := subscriber.Message{V: 1, Op: subscriber.OpUpdate, Keys: []string{"k"}}
	var inner bool
	outer := getOrLoadAcross(t, c, "k", func() {
		inner = getOrLoadAcross(t, c, "k", func() { c.Apply(inv) })
	})
	if outer || inner {
		t.Fatalf("stored outer=%v inner=%v across an invalidation of both", outer, inner)
	}
	outer = getOrLoadAcross(t, c, "j", func() {
		inner = getOrLoadAcross(t, c, "j", func() {})
		c.Apply(subscriber.Message{V: 1, Op: subscriber.OpUpdate, Keys: []string{"j"}})
	})
	if outer {
		t.Fatal("the outer load was stored across an invalidation during it")
	}
	if !inner {
		t.Fatal("the inner load, done before the invalidation, was not stored")
	}
}
