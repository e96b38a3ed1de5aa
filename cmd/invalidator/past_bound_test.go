package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// userKeys returns the profile keys of users from..to of a tenant.
func userKeys(tenant string, from, to int) []string {
	keys := make([]string, 0, to-from+1)
	for i := from; i <= to; i++ {
		keys = append(keys, fmt.Sprintf("tenant:%s:user:%d:profile", tenant, i))
	}
	return keys
}

// setMany stores keys with pipelined MSETs.
func (f *fixture) setMany(keys []string) {
	f.t.Helper()
	ctx := context.Background()
	pipe := f.rdb.Pipeline()
	for len(keys) > 0 {
		n := min(len(keys), 1000)
		args := make([]any, 0, 2*n)
		for _, k := range keys[:n] {
			args = append(args, k, "cached")
		}
		pipe.MSet(ctx, args...)
		keys = keys[n:]
	}
	if _, err := pipe.Exec(ctx); err != nil {
		f.t.Fatalf("MSET: %v", err)
	}
}

// existing returns how many of keys exist, with pipelined EXISTS.
func (f *fixture) existing(keys []string) int64 {
	f.t.Helper()
	ctx := context.Background()
	pipe := f.rdb.Pipeline()
	for i := 0; i < len(keys); i += 1000 {
		pipe.Exists(ctx, keys[i:min(i+1000, len(keys))]...)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		f.t.Fatalf("EXISTS: %v", err)
	}
	var n int64
	for _, c := range cmds {
		n += c.(interface{ Val() int64 }).Val()
	}
	return n
}

// scans returns how many SCAN commands Redis has run.
func (f *fixture) scans() int {
	f.t.Helper()
	info, err := f.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		f.t.Fatalf("INFO commandstats: %v", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_scan:calls="); ok {
			calls, _, _ := strings.Cut(rest, ",")
			n, err := strconv.Atoi(calls)
			if err != nil {
				f.t.Fatalf("INFO commandstats: %q", line)
			}
			return n
		}
	}
	return 0
}

// TestRun_PastBoundExact checks that a transaction that is not streamed
// (it arrives after its commit) and renders three times the key bound
// deletes every exact key, in parts, and scans nothing (ADR 27): keys the
// wide pattern would match survive, and its messages past the bound are
// in the wide form.
func TestRun_PastBoundExact(t *testing.T) {
	const bound, rows = 12_000, 36_000 // a row renders a key and a channel
	f := newFixture(t, fmt.Sprintf("INVALIDATOR_MAX_KEYS_PER_TXN=%d", bound))
	f.exec(fmt.Sprintf(`ALTER DATABASE %s SET logical_decoding_work_mem = '64MB'`, f.db))
	d := f.startReady()
	keys := userKeys("pb", 1, rows)
	f.setMany(keys)
	// the wide form tenant:*:user:*:profile would delete these
	others := []string{"tenant:other:user:1:profile", "tenant:pb:user:999999:profile"}
	f.set(others...)
	f.exec(fmt.Sprintf(`INSERT INTO users SELECT 'pb', g, 'x' FROM generate_series(1, %d) g`, rows))
	f.sync()
	if n := f.existing(keys); n != 0 {
		t.Errorf("%d of the transaction's %d keys survived", n, rows)
	}
	for _, k := range others {
		if !f.exists(k) {
			t.Errorf("key %s outside the transaction was deleted: the wide form was scanned", k)
		}
	}
	if n := f.scans(); n != 0 {
		t.Errorf("Redis ran %d SCANs, want none", n)
	}
	if n := d.metric(t, "invalidator_exact_past_bound_total", `rule="user-profile"`); n != 1 {
		t.Errorf("invalidator_exact_past_bound_total{rule=\"user-profile\"} = %v, want 1", n)
	}
	if n := d.metric(t, "invalidator_wide_form_total"); n != 0 {
		t.Errorf("invalidator_wide_form_total = %v, want 0", n)
	}
	if n := strings.Count(d.out.String(), "handing on part of a transaction before its commit"); n < 2 {
		t.Errorf("%d early parts logged, want at least 2", n)
	}
	wide := f.sub.on("cache:invalidate:user:*:*")
	if len(wide) != 1 || !strings.Contains(wide[0].Raw, `"patterns":["tenant:*:user:*:profile"]`) {
		t.Errorf("wide messages on user:*:* = %+v, want one with the covered pattern", wide)
	}
	if n := len(f.sub.on("cache:invalidate:user:pb:1")); n != 1 {
		t.Errorf("%d messages for row 1 (before the bound), want 1", n)
	}
	// the journal entry covers the keys it does not list, for replay
	entries, err := f.rdb.XRange(context.Background(), "cache:invalidate:_journal", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		p, _ := e.Values["patterns"].(string)
		found = found || strings.Contains(p, `"tenant:*:user:*:profile"`)
	}
	if !found {
		t.Error("no journal entry lists the covered pattern tenant:*:user:*:profile")
	}
}

// TestRun_PastBoundStreamed checks that a streamed transaction (it arrives
// before its commit, and could abort) past the key bound still switches to
// the scanned wide form.
func TestRun_PastBoundStreamed(t *testing.T) {
	f := newFixture(t, "INVALIDATOR_MAX_KEYS_PER_TXN=50") // logical_decoding_work_mem=64kB: streamed
	d := f.startReady()
	keys := userKeys("ps", 1, 4000)
	f.setMany(keys)
	f.set("tenant:other:user:1:profile")
	f.exec(`INSERT INTO users SELECT 'ps', g, repeat('x', 200) FROM generate_series(1, 4000) g`)
	f.sync()
	if n := f.existing(keys); n != 0 {
		t.Errorf("%d of the transaction's keys survived", n)
	}
	if f.scans() == 0 {
		t.Error("Redis ran no SCAN: a streamed transaction past the bound must use the wide form")
	}
	if f.exists("tenant:other:user:1:profile") {
		t.Error("the wide form tenant:*:user:*:profile left a key it matches")
	}
	if n := d.metric(t, "invalidator_wide_form_total", `rule="user-profile"`); n != 1 {
		t.Errorf("invalidator_wide_form_total{rule=\"user-profile\"} = %v, want 1", n)
	}
	if n := d.metric(t, "invalidator_exact_past_bound_total"); n != 0 {
		t.Errorf("invalidator_exact_past_bound_total = %v, want 0", n)
	}
}

// TestRun_PastBoundKilledMidway kills the daemon (SIGKILL) while it is
// applying, in parts, a transaction past the key bound: Redis is paused
// for writes after the first part went, and every key is cached again
// before the restart. The restarted daemon must delete every key again:
// the transaction's position was never confirmed, so the slot sends it
// again from its start.
func TestRun_PastBoundKilledMidway(t *testing.T) {
	const rows = 120_000
	f := newFixture(t, "INVALIDATOR_MAX_KEYS_PER_TXN=1000")
	f.exec(fmt.Sprintf(`ALTER DATABASE %s SET logical_decoding_work_mem = '64MB'`, f.db))
	ctx := context.Background()
	d := f.startReady()
	var keys []string
	caught := false
	// the kill must come after the first part and before the last: a
	// daemon fast enough to finish first gets a new transaction
	for attempt := 0; attempt < 3 && !caught; attempt++ {
		tenant := fmt.Sprintf("pk%d", attempt)
		keys = userKeys(tenant, 1, rows)
		f.setMany(keys)
		f.exec(fmt.Sprintf(`INSERT INTO users SELECT '%s', g, 'x' FROM generate_series(%d, %d) g`, tenant, 1, rows))
		first, last := keys[0], keys[rows-1]
		deadline := time.Now().Add(time.Minute)
		for f.exists(first) {
			if time.Now().After(deadline) {
				t.Fatal("the first part was not applied within a minute")
			}
			time.Sleep(time.Millisecond) // polling interval, not synchronisation
		}
		if err := f.rdb.Do(ctx, "CLIENT", "PAUSE", "60000", "WRITE").Err(); err != nil {
			t.Fatalf("CLIENT PAUSE: %v", err)
		}
		caught = f.exists(last)
		if !caught {
			if err := f.rdb.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Fatalf("CLIENT UNPAUSE: %v", err)
			}
			t.Logf("attempt %d: the daemon applied the whole transaction before the pause", attempt+1)
		}
	}
	if !caught {
		t.Fatal("three transactions were applied before the daemon could be stopped midway")
	}
	d.kill(t)
	if err := f.rdb.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatalf("CLIENT UNPAUSE: %v", err)
	}
	f.setMany(keys) // cached again: the first parts must be applied again too
	f.startReady()
	f.sync()
	if n := f.existing(keys); n != 0 {
		t.Errorf("%d of the transaction's %d keys are stale after kill -9 and restart", n, rows)
	}
}
