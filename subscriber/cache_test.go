package subscriber_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cachewire/invalidator/subscriber"
)

func TestCache_LRU(t *testing.T) {
	c := subscriber.NewCache(3)
	c.Set("a", 1)
	c.Set("b", 2)
	c.Set("c", 3)
	if got := c.Keys(); !slices.Equal(got, []string{"c", "b", "a"}) {
		t.Fatalf("Keys = %q, want [c b a]", got)
	}
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(a) = %v, %v; want 1, true", v, ok)
	}
	c.Set("d", 4) // evicts b, the least recently used since Get(a)
	if _, ok := c.Get("b"); ok {
		t.Error("b survived; it was the least recently used")
	}
	if got := c.Keys(); !slices.Equal(got, []string{"d", "a", "c"}) {
		t.Errorf("Keys = %q, want [d a c]", got)
	}
	c.Set("c", 30) // update: no eviction, moves to front
	if got := c.Keys(); !slices.Equal(got, []string{"c", "d", "a"}) {
		t.Errorf("Keys after update = %q, want [c d a]", got)
	}
	if v, _ := c.Get("c"); v != 30 {
		t.Errorf("Get(c) = %v, want 30", v)
	}
	c.Set("e", 5) // evicts a
	if got := c.Keys(); !slices.Equal(got, []string{"e", "c", "d"}) {
		t.Errorf("Keys = %q, want [e c d]", got)
	}
	if c.Len() != 3 {
		t.Errorf("Len = %d, want 3", c.Len())
	}
	if !c.Delete("c") || c.Delete("c") {
		t.Error("Delete(c) should report true once, then false")
	}
	if c.Len() != 2 {
		t.Errorf("Len after Delete = %d, want 2", c.Len())
	}
}

func TestCache_Clear(t *testing.T) {
	c := subscriber.NewCache(10)
	for i := range 5 {
		c.Set(fmt.Sprint(i), i)
	}
	c.Clear()
	if c.Len() != 0 || len(c.Keys()) != 0 {
		t.Fatalf("after Clear: Len = %d, Keys = %q", c.Len(), c.Keys())
	}
	c.Set("x", 1) // still usable
	c.Resync(subscriber.ReasonReconnect)
	if c.Len() != 0 {
		t.Fatalf("after Resync: Len = %d", c.Len())
	}
}

func TestNewCache_BadCapacity(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewCache(0) did not panic")
		}
	}()
	subscriber.NewCache(0)
}

func fill(c *subscriber.Cache, keys ...string) {
	for _, k := range keys {
		c.Set(k, k)
	}
}

func remaining(c *subscriber.Cache) []string {
	keys := c.Keys()
	slices.Sort(keys)
	return keys
}

func TestCache_Apply(t *testing.T) {
	all := []string{
		"tenant:t1:shard:42:structured",
		"tenant:t1:shard:43:structured",
		"tenant:t2:shard:42:structured",
		"tenant:t1:vsearch:q1",
		"tenant:t1:vsearch:q2",
		"tenant:t2:vsearch:q1",
		"tenant:*:vsearch:q",
		"tenant:t1:user:7:profile",
	}
	tests := []struct {
		name    string
		msg     subscriber.Message
		evicted int
		want    []string
	}{
		{
			name:    "keys",
			msg:     subscriber.Message{V: 1, Op: "update", Keys: []string{"tenant:t1:shard:42:structured", "tenant:t1:user:7:profile", "not:cached"}},
			evicted: 2,
			want: []string{"tenant:*:vsearch:q", "tenant:t1:shard:43:structured", "tenant:t1:vsearch:q1",
				"tenant:t1:vsearch:q2", "tenant:t2:shard:42:structured", "tenant:t2:vsearch:q1"},
		},
		{
			name:    "keys and patterns",
			msg:     subscriber.Message{V: 1, Op: "update", Keys: []string{"tenant:t1:shard:42:structured"}, Patterns: []string{"tenant:t1:vsearch:*"}},
			evicted: 3,
			want: []string{"tenant:*:vsearch:q", "tenant:t1:shard:43:structured", "tenant:t1:user:7:profile",
				"tenant:t2:shard:42:structured", "tenant:t2:vsearch:q1"},
		},
		{
			name:    "wide form, no keys",
			msg:     subscriber.Message{V: 1, Op: "update", Keys: []string{}, Patterns: []string{"tenant:t1:shard:*:structured"}},
			evicted: 2,
			want: []string{"tenant:*:vsearch:q", "tenant:t1:user:7:profile", "tenant:t1:vsearch:q1",
				"tenant:t1:vsearch:q2", "tenant:t2:shard:42:structured", "tenant:t2:vsearch:q1"},
		},
		{
			// A tenant literally named "*" must not flush other tenants.
			name:    "escaped glob characters",
			msg:     subscriber.Message{V: 1, Op: "delete", Patterns: []string{`tenant:\*:vsearch:*`}},
			evicted: 1,
			want: []string{"tenant:t1:shard:42:structured", "tenant:t1:shard:43:structured", "tenant:t1:user:7:profile",
				"tenant:t1:vsearch:q1", "tenant:t1:vsearch:q2", "tenant:t2:shard:42:structured", "tenant:t2:vsearch:q1"},
		},
		{
			name:    "truncate",
			msg:     subscriber.Message{V: 1, Op: "truncate", Patterns: []string{"tenant:*:shard:*:structured"}},
			evicted: 3,
			want: []string{"tenant:*:vsearch:q", "tenant:t1:user:7:profile", "tenant:t1:vsearch:q1",
				"tenant:t1:vsearch:q2", "tenant:t2:vsearch:q1"},
		},
		{
			name:    "heartbeat evicts nothing",
			msg:     subscriber.Message{V: 1, Op: subscriber.OpHeartbeat},
			evicted: 0,
			want:    slices.Sorted(slices.Values(all)),
		},
		{
			name:    "unknown version clears everything",
			msg:     subscriber.Message{V: 2, Op: "update", Keys: []string{"tenant:t1:user:7:profile"}},
			evicted: len(all),
			want:    nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := subscriber.NewCache(100)
			fill(c, all...)
			if n := c.Invalidate(tt.msg); n != tt.evicted {
				t.Errorf("Invalidate evicted %d, want %d", n, tt.evicted)
			}
			if got := remaining(c); !slices.Equal(got, tt.want) {
				t.Errorf("remaining after Invalidate:\n got %q\nwant %q", got, tt.want)
			}

			c = subscriber.NewCache(100)
			fill(c, all...)
			c.Apply(tt.msg)
			if got := remaining(c); !slices.Equal(got, tt.want) {
				t.Errorf("remaining after Apply:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestCache_SetIfGeneration(t *testing.T) {
	c := subscriber.NewCache(10)
	gen := c.Generation()
	if !c.SetIfGeneration(gen, "k", "v1") {
		t.Fatal("SetIfGeneration refused with no invalidation in between")
	}
	gen = c.Generation()
	// An invalidation lands while the value is being loaded.
	c.Apply(subscriber.Message{V: 1, Op: "update", Keys: []string{"k"}})
	if c.SetIfGeneration(gen, "k", "stale") {
		t.Fatal("SetIfGeneration stored a value read before an invalidation")
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("stale value is cached")
	}
	for name, invalidate := range map[string]func(){
		"Clear":  c.Clear,
		"Resync": func() { c.Resync(subscriber.ReasonStart) },
		"Delete": func() { c.Delete("other") },
	} {
		gen := c.Generation()
		invalidate()
		if c.SetIfGeneration(gen, "k", "stale") {
			t.Errorf("SetIfGeneration stored across %s", name)
		}
	}
}

// TestCache_Concurrent exercises every method from many goroutines; run it
// with -race.
func TestCache_Concurrent(t *testing.T) {
	const capacity = 64
	c := subscriber.NewCache(capacity)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := fmt.Sprintf("tenant:t%d:key:%d", g%3, i%100)
				switch i % 10 {
				case 0:
					c.Apply(subscriber.Message{V: 1, Op: "update", Patterns: []string{fmt.Sprintf("tenant:t%d:*", i%3)}})
				case 1:
					c.Delete(k)
				case 2:
					c.SetIfGeneration(c.Generation(), k, i)
				case 3:
					if i%500 == 3 {
						c.Clear()
					}
				case 4:
					_ = c.Keys()
				default:
					if _, ok := c.Get(k); !ok {
						c.Set(k, i)
					}
				}
				if n := c.Len(); n > capacity {
					t.Errorf("Len = %d exceeds capacity %d", n, capacity)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, k := c.Len(), len(c.Keys()); n != k || n > capacity {
		t.Errorf("Len = %d, len(Keys) = %d, capacity %d", n, k, capacity)
	}
}
