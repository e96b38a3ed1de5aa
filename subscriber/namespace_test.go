package subscriber_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/subscriber"
)

func getNS(tb testing.TB, f *subscriber.Filler, ns, key string, load func(context.Context) ([]byte, error)) string {
	tb.Helper()
	v, err := f.GetInNamespace(context.Background(), ns, key, load)
	if err != nil {
		tb.Fatalf("GetInNamespace %s %s: %v", ns, key, err)
	}
	if subscriber.IsLeaseMarker(v) || strings.HasPrefix(string(v), subscriber.VersionedValuePrefix) {
		tb.Fatalf("GetInNamespace %s returned a stored form %q", key, v)
	}
	return string(v)
}

func TestVersionedValue(t *testing.T) {
	b := subscriber.VersionedValue("42", []byte("a:b"))
	if string(b) != "\x00invalidator:v:42:a:b" {
		t.Fatalf("VersionedValue = %q", b)
	}
	ver, v, ok := subscriber.ParseVersionedValue(b)
	if !ok || ver != "42" || string(v) != "a:b" {
		t.Errorf("ParseVersionedValue = %q, %q, %v", ver, v, ok)
	}
	for _, s := range []string{"plain", subscriber.VersionedValuePrefix, subscriber.VersionedValuePrefix + ":x", subscriber.LeaseMarkerPrefix + "x"} {
		if _, _, ok := subscriber.ParseVersionedValue([]byte(s)); ok {
			t.Errorf("ParseVersionedValue(%q) ok", s)
		}
	}
}

// A miss reads version and value in one round trip, then loads and
// stores the value tagged with the version; a hit is that one round trip.
// An INCR of the version key (the daemon's wide form) makes the next read
// a miss without deleting anything.
func TestFiller_GetInNamespace(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	ctx := context.Background()
	var cmds commandCounter
	rdb.AddHook(&cmds)
	f := newFiller(t, rdb, subscriber.FillConfig{TTL: time.Minute, LeaseTTL: time.Second})
	var calls atomic.Int64
	rdb.Set(ctx, "t:t1:v", "7", 0)
	getNS(t, f, "t:t1:v", "warm", loadOf("w", &calls)) // loads the scripts

	if v := getNS(t, f, "t:t1:v", "t:t1:doc:1", loadOf("v1", &calls)); v != "v1" {
		t.Fatalf("miss = %q", v)
	}
	if got := raw(t, rdb, "t:t1:doc:1"); got != "\x00invalidator:v:7:v1" {
		t.Fatalf("stored %q, want the value tagged with version 7", got)
	}
	if ttl := rdb.PTTL(ctx, "t:t1:doc:1").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("PTTL = %s, want the FillConfig.TTL", ttl)
	}
	before := cmds.n.Load()
	if v := getNS(t, f, "t:t1:v", "t:t1:doc:1", loadOf("other", &calls)); v != "v1" {
		t.Fatalf("hit = %q, want v1", v)
	}
	if n := cmds.n.Load() - before; n != 2 {
		t.Errorf("a hit sent %d commands, want the 2 GETs of one pipeline", n)
	}

	if err := rdb.Incr(ctx, "t:t1:v").Err(); err != nil {
		t.Fatal(err)
	}
	if v := getNS(t, f, "t:t1:v", "t:t1:doc:1", loadOf("v2", &calls)); v != "v2" {
		t.Fatalf("after the bump = %q, want a miss that loads v2", v)
	}
	if got := raw(t, rdb, "t:t1:doc:1"); got != "\x00invalidator:v:8:v2" {
		t.Fatalf("stored %q after the bump", got)
	}
	// an exact delete still works on a versioned value
	rdb.Unlink(ctx, "t:t1:doc:1")
	if v := getNS(t, f, "t:t1:v", "t:t1:doc:1", loadOf("v3", &calls)); v != "v3" {
		t.Fatalf("after UNLINK = %q, want v3", v)
	}
	if st := f.Stats(); st.Hits != 1 || st.Misses != 4 || st.Fills != 4 || st.Errors != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// The race the version closes: a value loaded before a bump is stored
// tagged with the version read before the load, so it is never served
// after the bump.
func TestFiller_GetInNamespace_BumpDuringLoad(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	ctx := context.Background()
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: 10 * time.Second})
	rdb.Set(ctx, "ns", "1", 0)
	v := getNS(t, f, "ns", "k", func(ctx context.Context) ([]byte, error) {
		if m := raw(t, rdb, "k"); !subscriber.IsLeaseMarker([]byte(m)) {
			t.Errorf("during the load the key holds %q, want a lease marker", m)
		}
		if err := rdb.Incr(ctx, "ns").Err(); err != nil {
			t.Fatal(err)
		}
		return []byte("old"), nil
	})
	if v != "old" {
		t.Fatalf("Get = %q", v)
	}
	var calls atomic.Int64
	if v := getNS(t, f, "ns", "k", loadOf("new", &calls)); v != "new" {
		t.Fatalf("after a bump during the load = %q, want new: the old value was served", v)
	}
	// and a delete during the load voids the store, as for Get
	getNS(t, f, "ns", "d", func(ctx context.Context) ([]byte, error) {
		rdb.Unlink(ctx, "d")
		return []byte("old"), nil
	})
	if got := raw(t, rdb, "d"); got != "" {
		t.Fatalf("stored %q across a delete", got)
	}
	if st := f.Stats(); st.FillsVoided != 1 {
		t.Errorf("Stats = %+v, want one voided fill", st)
	}
}

// A version key that does not exist is created from the clock, so that a
// lost version key (evicted, deleted) never makes an old value current.
func TestFiller_GetInNamespace_MissingVersion(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	ctx := context.Background()
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: time.Second})
	rdb.Set(ctx, "k", subscriber.VersionedValue("1", []byte("stale")), 0)
	var calls atomic.Int64
	if v := getNS(t, f, "ns", "k", loadOf("fresh", &calls)); v != "fresh" {
		t.Fatalf("Get = %q, want a miss", v)
	}
	ver := raw(t, rdb, "ns")
	if len(ver) < 10 {
		t.Fatalf("version key = %q, want a clock-derived version", ver)
	}
	if got := raw(t, rdb, "k"); got != "\x00invalidator:v:"+ver+":fresh" {
		t.Fatalf("stored %q", got)
	}
	rdb.Set(ctx, "bad", "x", 0)
	if _, err := f.GetInNamespace(ctx, "bad", "k", loadOf("v", &calls)); err == nil || !strings.Contains(err.Error(), "version") {
		t.Errorf("a version key that is no number: %v", err)
	}
}

// A reader at a later version takes over the lease of a reader at an
// earlier one (whose value would be void); a reader at the same version
// waits for it, and on finding a later version's value reads the version
// again instead of overwriting it.
func TestFiller_GetInNamespace_Leases(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	ctx := context.Background()
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: 10 * time.Second, Wait: waitLimit})
	rdb.Set(ctx, "ns", "5", 0)
	release := make(chan struct{})
	done := make(chan string)
	go func() {
		v, _ := f.GetInNamespace(ctx, "ns", "hot", func(context.Context) ([]byte, error) {
			<-release
			return []byte("at5"), nil
		})
		done <- string(v)
	}()
	waitFor(t, "the first reader's lease", func() bool { return subscriber.IsLeaseMarker([]byte(raw(t, rdb, "hot"))) })
	second := make(chan string)
	var calls atomic.Int64
	go func() {
		v, err := f.GetInNamespace(ctx, "ns", "hot", loadOf("second", &calls))
		if err != nil {
			t.Error(err)
		}
		second <- string(v)
	}()
	waitFor(t, "the second reader to wait", func() bool { return f.Stats().LeaseWaits == 1 })
	rdb.Incr(ctx, "ns")
	if v := getNS(t, f, "ns", "hot", loadOf("at6", &calls)); v != "at6" {
		t.Fatalf("reader at version 6 = %q", v)
	}
	close(release)
	if v := <-done; v != "at5" {
		t.Fatalf("first reader = %q", v)
	}
	if v := <-second; v != "at6" {
		t.Fatalf("second reader = %q, want the value of version 6, which it found while it waited", v)
	}
	if calls.Load() != 1 {
		t.Errorf("load called %d times, want once (by the reader at version 6)", calls.Load())
	}
	if got := raw(t, rdb, "hot"); got != "\x00invalidator:v:6:at6" {
		t.Fatalf("stored %q, want version 6's value (the version 5 fill lost its lease)", got)
	}
}

// On Redis Cluster the version key and the key are on different nodes:
// read in one pipeline, bumped by an INCR on the version key's node.
func TestFiller_GetInNamespace_Cluster(t *testing.T) {
	cc := testsrv.StartRedisCluster(t, 3).Client(t)
	ctx := context.Background()
	f := newFiller(t, cc, subscriber.FillConfig{TTL: time.Minute, LeaseTTL: 10 * time.Second})
	var calls atomic.Int64
	for i := range 12 {
		ns := fmt.Sprintf("tenant:t%d:v", i)
		key := fmt.Sprintf("tenant:t%d:doc:1", i)
		if v := getNS(t, f, ns, key, loadOf("a", &calls)); v != "a" {
			t.Fatalf("%s: miss = %q", key, v)
		}
		if v := getNS(t, f, ns, key, loadOf("b", &calls)); v != "a" {
			t.Fatalf("%s: hit = %q", key, v)
		}
		if err := cc.Incr(ctx, ns).Err(); err != nil {
			t.Fatal(err)
		}
		if v := getNS(t, f, ns, key, loadOf("c", &calls)); v != "c" {
			t.Fatalf("%s: after the bump = %q", key, v)
		}
	}
	if st := f.Stats(); st.Hits != 12 || st.Fills != 24 || st.Errors != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

// A message naming a namespace evicts the entries stored in it and voids
// their fills in progress; other namespaces' and plain entries stay.
func TestCache_GetOrLoadInNamespace(t *testing.T) {
	c := subscriber.NewCache(100)
	ctx := context.Background()
	load := func(v string) func(context.Context) (any, error) {
		return func(context.Context) (any, error) { return v, nil }
	}
	for _, k := range []string{"a", "b"} {
		if _, err := c.GetOrLoadInNamespace(ctx, "t:t1:v", k, load("1"+k)); err != nil {
			t.Fatal(err)
		}
	}
	c.GetOrLoadInNamespace(ctx, "t:t2:v", "c", load("2c"))
	c.GetOrLoad(ctx, "d", load("d"))
	if v, _ := c.GetOrLoadInNamespace(ctx, "t:t1:v", "a", load("x")); v != "1a" {
		t.Fatalf("hit = %v", v)
	}
	bump := subscriber.Message{V: 1, Op: "truncate", Namespaces: []string{"t:t1:v"}}
	if n := c.Invalidate(bump); n != 2 {
		t.Errorf("Invalidate evicted %d, want 2", n)
	}
	for k, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true} {
		if _, ok := c.Get(k); ok != want {
			t.Errorf("after the bump: %s present = %v, want %v", k, ok, want)
		}
	}
	v, _ := c.GetOrLoadInNamespace(ctx, "t:t1:v", "a", func(context.Context) (any, error) {
		c.Invalidate(bump)
		return "old", nil
	})
	if _, ok := c.Get("a"); v != "old" || ok {
		t.Errorf("a fill across a bump was stored (%v, %v)", v, ok)
	}
	c.GetOrLoadInNamespace(ctx, "t:t2:v", "e", func(context.Context) (any, error) {
		c.Invalidate(bump) // another namespace's bump
		return "e", nil
	})
	if _, ok := c.Get("e"); !ok {
		t.Error("a bump of another namespace voided a fill")
	}
	if st := c.FillStats(); st.FillsVoided != 1 || st.VoidedByNamespace != 1 {
		t.Errorf("FillStats = %+v", st)
	}
	// exact keys still evict namespaced entries
	c.Invalidate(subscriber.Message{V: 1, Op: "update", Keys: []string{"c"}})
	if _, ok := c.Get("c"); ok {
		t.Error("an exact key did not evict a namespaced entry")
	}
}

func TestDecodeMessage_Namespaces(t *testing.T) {
	m, err := subscriber.DecodeMessage("inv:doc:*", []byte(`{"v":1,"op":"truncate","table":"public.docs","rule":"docs","keys":[],"namespaces":["app:t:t1:v"],"lsn":"0/1","xid":1,"commit_time":"2026-12-08T00:00:00.000000Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Namespaces) != 1 || m.Namespaces[0] != "app:t:t1:v" {
		t.Errorf("Namespaces = %q", m.Namespaces)
	}
}

// A version key that went back (lost, then made again by the daemon's
// INCR from 0) leaves values of later versions behind: they read as
// misses and are replaced, never served and never in the way for good.
func TestFiller_GetInNamespace_VersionWentBack(t *testing.T) {
	rdb := testsrv.StartRedis(t).Client(t)
	ctx := context.Background()
	f := newFiller(t, rdb, subscriber.FillConfig{LeaseTTL: time.Second})
	rdb.Set(ctx, "k", subscriber.VersionedValue("1765000000000000", []byte("old epoch")), 0)
	rdb.Set(ctx, "ns", "1", 0)
	var calls atomic.Int64
	if v := getNS(t, f, "ns", "k", loadOf("fresh", &calls)); v != "fresh" {
		t.Fatalf("Get = %q, want a miss", v)
	}
	if got := raw(t, rdb, "k"); got != "\x00invalidator:v:1:fresh" {
		t.Fatalf("stored %q, want the value of version 1", got)
	}
}
