package subscriber_test

import (
	"context"
	"fmt"

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
