package main

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/cachewire/invalidator/subscriber"
)

// TestFill_DaemonVoidsRacingFill forces the cache-aside race end to end: a
// reader loads a row, the row changes and the daemon applies the change
// (exact key and pattern deletion), and only then does the reader try to
// store. The Filler must not store the old value; the in-process Cache's
// GetOrLoad, fed by the daemon's messages, must not either.
func TestFill_DaemonVoidsRacingFill(t *testing.T) {
	f := newFixture(t)
	f.exec(`INSERT INTO shards VALUES ('t1', 1, 'v1', 'a')`)
	f.startReady()
	ctx := context.Background()
	payload := func() string { return f.query(`SELECT payload FROM shards WHERE tenant_id = 't1' AND id = 1`)[0][0] }
	filler, err := subscriber.NewFiller(f.rdb, subscriber.FillConfig{TTL: time.Minute, LeaseTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	version := 1
	// commitAndSync updates the row and waits until the daemon applied it.
	commitAndSync := func() {
		version++
		f.exec(`UPDATE shards SET payload = 'v` + strconv.Itoa(version) + `' WHERE tenant_id = 't1' AND id = 1`)
		f.sync()
	}

	for _, key := range []string{"tenant:t1:shard:1:structured", "tenant:t1:vsearch:q1"} {
		t.Run("Filler "+key, func(t *testing.T) {
			var loaded string
			v, err := filler.Get(ctx, key, func(context.Context) ([]byte, error) {
				loaded = payload()
				commitAndSync()
				return []byte(loaded), nil
			})
			if err != nil || string(v) != loaded {
				t.Fatalf("Get = %q, %v; want the loaded %q", v, err, loaded)
			}
			if f.exists(key) {
				t.Fatalf("%s was stored (%q) after the daemon deleted it", key, f.rdb.Get(ctx, key).Val())
			}
			v, err = filler.Get(ctx, key, func(context.Context) ([]byte, error) { return []byte(payload()), nil })
			if err != nil || string(v) != payload() || f.rdb.Get(ctx, key).Val() != payload() {
				t.Fatalf("the next Get = %q, %v (stored %q), want the current row stored", v, err, f.rdb.Get(ctx, key).Val())
			}
		})
	}
	if st := filler.Stats(); st.FillsVoided != 2 || st.Fills != 2 {
		t.Errorf("Filler Stats = %+v, want 2 voided and 2 stored", st)
	}

	t.Run("Cache.GetOrLoad", func(t *testing.T) {
		const key = "tenant:t1:shard:1:structured"
		c := subscriber.NewCache(100)
		applied := make(chan subscriber.Message, 100)
		started := make(chan struct{}, 10)
		s, err := subscriber.New(subscriber.Config{
			Client:    f.rdb,
			OnMessage: func(m subscriber.Message) { c.Apply(m); applied <- m },
			OnResync:  func(r string) { c.Resync(r); started <- struct{}{} },
		})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error)
		go func() { done <- s.Run(runCtx) }()
		defer func() { cancel(); <-done }()
		<-started
		v, err := c.GetOrLoad(ctx, key, func(context.Context) (any, error) {
			loaded := payload()
			commitAndSync()
			for m := range applied { // the Cache has applied the change's message
				if slices.Contains(m.Keys, key) {
					break
				}
			}
			return loaded, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := c.Get(key); ok {
			t.Fatalf("GetOrLoad stored %v (returned %v) after the change's message was applied; the row is %q", got, v, payload())
		}
		if st := c.FillStats(); st.FillsVoided != 1 {
			t.Errorf("FillStats = %+v, want one voided", st)
		}
	})
}
