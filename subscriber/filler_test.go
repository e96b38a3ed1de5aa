package subscriber_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/subscriber"
)

// commandCounter is a go-redis hook that counts the commands sent.
type commandCounter struct{ n atomic.Int64 }

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func newFiller(tb testing.TB, rdb redis.UniversalClient, cfg subscriber.FillConfig) *subscriber.Filler {
	tb.Helper()
	f, err := subscriber.NewFiller(rdb, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

// loadOf returns a load function that returns v and counts its calls.
func loadOf(v string, calls *atomic.Int64) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		calls.Add(1)
		return []byte(v), nil
	}
}

func get(tb testing.TB, f *subscriber.Filler, key string, load func(context.Context) ([]byte, error)) string {
	tb.Helper()
	v, err := f.Get(context.Background(), key, load)
	if err != nil {
		tb.Fatalf("Get %s: %v", key, err)
	}
	if subscriber.IsLeaseMarker(v) {
		tb.Fatalf("Get %s returned a lease marker %q", key, v)
	}
	return string(v)
}

// raw returns key's value in Redis ("" when absent).
func raw(tb testing.TB, rdb redis.UniversalClient, key string) string {
	tb.Helper()
	v, err := rdb.Get(context.Background(), key).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		tb.Fatalf("GET %s: %v", key, err)
	}
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestNewFiller_Validation(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, tt := range []struct {
		cfg  subscriber.FillConfig
		want string
	}{
		{subscriber.FillConfig{}, "LeaseTTL"},
		{subscriber.FillConfig{LeaseTTL: -time.Second}, "LeaseTTL"},
		{subscriber.FillConfig{LeaseTTL: 999 * time.Microsecond}, "LeaseTTL must be at least 1ms"},
		{subscriber.FillConfig{LeaseTTL: time.Second, TTL: -1}, "TTL"},
		{subscriber.FillConfig{LeaseTTL: time.Second, TTL: time.Microsecond}, "TTL must be 0 (no expiry) or at least 1ms"},
		{subscriber.FillConfig{LeaseTTL: time.Second, Wait: -1}, "Wait"},
	} {
		if _, err := subscriber.NewFiller(rdb, tt.cfg); err == nil || !strings.Contains(err.Error(), "FillConfig."+tt.want) {
			t.Errorf("NewFiller(%+v) = %v, want an error naming FillConfig.%s", tt.cfg, err, tt.want)
		}
	}
	// The smallest durations Redis can take are accepted.
	if _, err := subscriber.NewFiller(rdb, subscriber.FillConfig{TTL: time.Millisecond, LeaseTTL: time.Millisecond}); err != nil {
		t.Errorf("NewFiller with 1ms TTL and LeaseTTL: %v", err)
	}
	if _, err := subscriber.NewFiller(nil, subscriber.FillConfig{LeaseTTL: time.Second}); err == nil {
		t.Error("NewFiller(nil) succeeded")
	}
}

// TestFiller_MissThenHit: a miss loads and stores with the TTL in three
// commands; a hit is one GET and does not load.
func TestFiller_MissThenHit(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	var cmds commandCounter
	rdb.AddHook(&cmds)
	f := newFiller(t, rdb, subscriber.FillConfig{TTL: time.Minute, LeaseTTL: time.Second})
	var calls atomic.Int64
	get(t, f, "warm", loadOf("w", &calls)) // loads the store script into Redis

	before := cmds.n.Load()
	if v := get(t, f, "k", loadOf("v1", &calls)); v != "v1" {
		t.Fatalf("miss = %q, want v1", v)
	}
	if n := cmds.n.Load() - before; n > 3 {
		t.Errorf("a miss took %d commands, want at most 3", n)
	}
	if got := raw(t, rdb, "k"); got != "v1" {
		t.Fatalf("stored %q, want v1", got)
	}
	if ttl := rdb.PTTL(context.Background(), "k").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL = %s, want the FillConfig.TTL", ttl)
	}
	before = cmds.n.Load()
	if v := get(t, f, "k", loadOf("v2", &calls)); v != "v1" {
		t.Fatalf("hit = %q, want v1", v)
	}
	if n := cmds.n.Load() - before; n != 1 {
		t.Errorf("a hit took %d commands, want 1", n)
	}
	if calls.Load() != 2 {
		t.Errorf("load called %d times, want 2 (warm and the miss)", calls.Load())
	}
	if st := f.Stats(); st != (subscriber.FillStats{Hits: 1, Misses: 2, Fills: 2}) {
		t.Errorf("Stats = %+v", st)
	}

	// TTL 0: stored without expiry (the lease's PX is dropped).
	f0 := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: time.Second})
	get(t, f0, "forever", loadOf("v", &calls))
	if ttl := rdb.PTTL(context.Background(), "forever").Val(); ttl != -1 {
		t.Errorf("PTTL with TTL 0 = %s, want none (-1)", ttl)
	}
}

// TestFiller_DeleteDuringLoadVoidsStore forces the race: the key is
// deleted (as the daemon's UNLINK does) while the value is loaded, and the
// loaded value is returned but not stored.
func TestFiller_DeleteDuringLoadVoidsStore(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: 10 * time.Second})
	v := get(t, f, "k", func(ctx context.Context) ([]byte, error) {
		if m := raw(t, rdb, "k"); !subscriber.IsLeaseMarker([]byte(m)) {
			t.Errorf("during the load the key holds %q, want a lease marker", m)
		}
		if err := rdb.Unlink(ctx, "k").Err(); err != nil {
			t.Fatal(err)
		}
		return []byte("old"), nil
	})
	if v != "old" {
		t.Fatalf("Get = %q, want the loaded value", v)
	}
	if got := raw(t, rdb, "k"); got != "" {
		t.Fatalf("after a delete during the load the key holds %q, want nothing", got)
	}
	if st := f.Stats(); st.FillsVoided != 1 || st.Fills != 0 {
		t.Errorf("Stats = %+v, want one voided fill", st)
	}
	var calls atomic.Int64
	if v := get(t, f, "k", loadOf("new", &calls)); v != "new" || raw(t, rdb, "k") != "new" {
		t.Fatalf("the next Get = %q (stored %q), want new loaded and stored", v, raw(t, rdb, "k"))
	}
}

// TestFiller_LeaseExpiry: a load that outlives its lease does not store,
// even when another reader took a new lease meanwhile; the other's value
// is stored.
func TestFiller_LeaseExpiry(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	slow := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: 50 * time.Millisecond})
	other := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: 10 * time.Second})
	var calls atomic.Int64
	v := get(t, slow, "k", func(context.Context) ([]byte, error) {
		waitFor(t, "the lease to expire", func() bool { return raw(t, rdb, "k") == "" })
		if v := get(t, other, "k", loadOf("second", &calls)); v != "second" {
			t.Errorf("other reader = %q", v)
		}
		return []byte("first"), nil
	})
	if v != "first" {
		t.Fatalf("slow reader = %q, want its own load", v)
	}
	if got := raw(t, rdb, "k"); got != "second" {
		t.Fatalf("key = %q, want the value loaded under the live lease", got)
	}
	if st := slow.Stats(); st.FillsVoided != 1 || st.Fills != 0 {
		t.Errorf("slow Stats = %+v, want its fill voided", st)
	}
}

// TestFiller_LoadErrorReleasesLease: a failed load returns its error and
// deletes its own lease (the next reader loads at once), never another's.
func TestFiller_LoadErrorReleasesLease(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: 10 * time.Second})
	boom := errors.New("database down")
	_, err := f.Get(context.Background(), "k", func(context.Context) ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `"k"`) {
		t.Fatalf("Get error = %v, want the load's error wrapped with the key", err)
	}
	if got := raw(t, rdb, "k"); got != "" {
		t.Fatalf("after a failed load the key holds %q, want the lease released", got)
	}
	if st := f.Stats(); st.Errors != 1 || st.Fills != 0 {
		t.Errorf("Stats = %+v", st)
	}

	short := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: 50 * time.Millisecond})
	alien := subscriber.LeaseMarkerPrefix + "another-reader"
	_, err = short.Get(context.Background(), "j", func(context.Context) ([]byte, error) {
		waitFor(t, "the lease to expire", func() bool { return raw(t, rdb, "j") == "" })
		rdb.Set(context.Background(), "j", alien, time.Minute)
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Get error = %v", err)
	}
	if got := raw(t, rdb, "j"); got != alien {
		t.Fatalf("a failed load released another reader's lease: key = %q", got)
	}
}

// TestFiller_WaitsForAnothersLease: a reader that finds another's lease
// waits and returns the value the other stores, without loading.
func TestFiller_WaitsForAnothersLease(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: 10 * time.Second, Wait: waitLimit})
	release := make(chan struct{})
	done := make(chan string)
	go func() {
		v, _ := f.Get(context.Background(), "hot", func(context.Context) ([]byte, error) {
			<-release
			return []byte("filled"), nil
		})
		done <- string(v)
	}()
	waitFor(t, "the first reader's lease", func() bool { return subscriber.IsLeaseMarker([]byte(raw(t, rdb, "hot"))) })
	var calls atomic.Int64
	second := make(chan string)
	go func() {
		v, err := f.Get(context.Background(), "hot", loadOf("second", &calls))
		if err != nil {
			t.Error(err)
		}
		second <- string(v)
	}()
	waitFor(t, "the second reader to wait", func() bool { return f.Stats().LeaseWaits == 1 })
	close(release)
	if v := <-done; v != "filled" {
		t.Fatalf("first reader = %q", v)
	}
	if v := <-second; v != "filled" {
		t.Fatalf("second reader = %q, want the first's value", v)
	}
	if calls.Load() != 0 {
		t.Error("the waiting reader loaded")
	}
	if st := f.Stats(); st.Hits != 1 || st.Misses != 1 || st.Fills != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

// TestFiller_WaitRunsOut: when the lease outlives Wait, the reader loads
// and returns its value without storing it over the lease; the marker is
// never returned.
func TestFiller_WaitRunsOut(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	alien := subscriber.LeaseMarkerPrefix + "held"
	rdb.Set(context.Background(), "hot", alien, time.Minute)
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: time.Second, Wait: 20 * time.Millisecond})
	var calls atomic.Int64
	if v := get(t, f, "hot", loadOf("mine", &calls)); v != "mine" {
		t.Fatalf("Get = %q, want its own load", v)
	}
	if got := raw(t, rdb, "hot"); got != alien {
		t.Fatalf("key = %q, want the other's lease untouched", got)
	}
	if st := f.Stats(); st.LeaseWaits != 1 || st.Misses != 1 || st.Fills != 0 {
		t.Errorf("Stats = %+v", st)
	}
	// A reader with no Wait loads at once, too.
	f0 := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: time.Second})
	if v := get(t, f0, "hot", loadOf("now", &calls)); v != "now" {
		t.Fatalf("Get with Wait 0 = %q", v)
	}

	// A lease that expires while a reader waits: the reader takes its own
	// lease and stores.
	rdb.Set(context.Background(), "brief", alien, 30*time.Millisecond)
	fw := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: time.Second, Wait: 5 * time.Second})
	if v := get(t, fw, "brief", loadOf("after", &calls)); v != "after" || raw(t, rdb, "brief") != "after" {
		t.Fatalf("after the other's lease expired: Get = %q, stored %q; want after stored", v, raw(t, rdb, "brief"))
	}

	// The wait honours ctx.
	fl := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: time.Second, Wait: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFor(t, "the reader to wait", func() bool { return fl.Stats().LeaseWaits == 1 })
		cancel()
	}()
	if _, err := fl.Get(ctx, "hot", loadOf("x", &calls)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled ctx = %v, want context.Canceled", err)
	}
}

// TestFiller_MarkerLikeValueNotStored: a loaded value that would read as a
// lease marker is returned but never stored.
func TestFiller_MarkerLikeValueNotStored(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: time.Second})
	var calls atomic.Int64
	v, err := f.Get(context.Background(), "k", loadOf(subscriber.LeaseMarkerPrefix+"x", &calls))
	if err != nil || string(v) != subscriber.LeaseMarkerPrefix+"x" {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if got := raw(t, rdb, "k"); got != "" {
		t.Fatalf("key = %q, want nothing stored", got)
	}
}

// TestFiller_ConcurrentReadersNeverSeeMarker: many readers of few keys,
// with deletions in between, only ever get loaded values.
func TestFiller_ConcurrentReadersNeverSeeMarker(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: time.Second, Wait: 5 * time.Millisecond})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := fmt.Sprintf("k%d", i%4)
				v, err := f.Get(context.Background(), key, func(context.Context) ([]byte, error) {
					time.Sleep(100 * time.Microsecond)
					return []byte("value:" + key), nil
				})
				if err != nil || string(v) != "value:"+key {
					t.Errorf("reader %d: Get %s = %q, %v", g, key, v, err)
					return
				}
				if i%10 == g {
					rdb.Unlink(context.Background(), key)
				}
			}
		}()
	}
	wg.Wait()
	if st := f.Stats(); st.Hits+st.Misses != 8*200 || st.Errors != 0 {
		t.Errorf("Stats = %+v, want 1600 reads without errors", st)
	}
}

// TestFiller_Cluster: the same protocol through a Redis Cluster client,
// with keys on every node.
func TestFiller_Cluster(t *testing.T) {
	cc := testsrv.StartRedisCluster(t, 3).Client(t)
	f := newFiller(t, cc, subscriber.FillConfig{TTL: time.Minute, LeaseTTL: 10 * time.Second})
	var calls atomic.Int64
	for i := range 12 {
		key := fmt.Sprintf("tenant:t%d:shard:1:structured", i)
		if v := get(t, f, key, loadOf("v"+key, &calls)); v != "v"+key || raw(t, cc, key) != "v"+key {
			t.Fatalf("%s: Get = %q, stored %q", key, v, raw(t, cc, key))
		}
		if v := get(t, f, key, loadOf("other", &calls)); v != "v"+key {
			t.Fatalf("%s: hit = %q", key, v)
		}
		voided := fmt.Sprintf("tenant:t%d:shard:2:structured", i)
		get(t, f, voided, func(ctx context.Context) ([]byte, error) {
			if err := cc.Unlink(ctx, voided).Err(); err != nil {
				t.Fatal(err)
			}
			return []byte("old"), nil
		})
		if got := raw(t, cc, voided); got != "" {
			t.Fatalf("%s: stored %q across a delete", voided, got)
		}
	}
	if st := f.Stats(); st.Fills != 12 || st.FillsVoided != 12 || st.Hits != 12 {
		t.Errorf("Stats = %+v", st)
	}
}
