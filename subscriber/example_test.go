package subscriber_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/subscriber"
)

// The documented wiring: a Cache follows the daemon's messages and is
// dropped whole on every resync.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()

	cache := subscriber.NewCache(10_000)
	sub, err := subscriber.New(subscriber.Config{
		Client:    rdb,
		OnMessage: cache.Apply,
		OnResync:  cache.Resync,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = sub.Run(ctx) }() // in a real program, owned and waited for
}

func ExampleCache_SetIfGeneration() {
	cache := subscriber.NewCache(100)
	load := func(key string) string { return "value of " + key } // the source of truth

	gen := cache.Generation()
	v := load("tenant:t1:user:7:profile")
	// An invalidation for the key arrives while it is being loaded.
	cache.Apply(subscriber.Message{V: 1, Op: subscriber.OpUpdate, Keys: []string{"tenant:t1:user:7:profile"}})
	fmt.Println(cache.SetIfGeneration(gen, "tenant:t1:user:7:profile", v))
	// Output: false
}

func ExampleMatchPattern() {
	fmt.Println(subscriber.MatchPattern(`tenant:\*:vsearch:*`, "tenant:*:vsearch:q"))
	fmt.Println(subscriber.MatchPattern(`tenant:\*:vsearch:*`, "tenant:t1:vsearch:q"))
	// Output:
	// true
	// false
}

// Filling Redis with leases: a value loaded before a change committed is
// never stored after the daemon deleted the key.
func ExampleFiller() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	defer rdb.Close()

	f, err := subscriber.NewFiller(rdb, subscriber.FillConfig{
		TTL:      10 * time.Minute,
		LeaseTTL: 2 * time.Second,
		Wait:     50 * time.Millisecond,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, err := f.Get(context.Background(), "tenant:t1:shard:42:structured", func(ctx context.Context) ([]byte, error) {
		return []byte("row 42, read from the primary"), nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s\n", v)
}

// Filling the in-process Cache per key: only an invalidation of this key
// (or a resync) while load runs prevents the store.
func ExampleCache_GetOrLoad() {
	cache := subscriber.NewCache(10_000)
	v, err := cache.GetOrLoad(context.Background(), "tenant:t1:shard:42:structured", func(ctx context.Context) (any, error) {
		return "row 42", nil
	})
	fmt.Println(v, err, cache.Len())
	// Output: row 42 <nil> 1
}
