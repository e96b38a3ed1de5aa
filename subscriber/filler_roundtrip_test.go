package subscriber_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/subscriber"
)

// redisMonitor reads a real redis-server's MONITOR feed: every command the
// server executes, in order, with its source (a client's address, or "lua"
// for a command a script called). It counts round trips as Redis saw them,
// not as a client library reports them.
type redisMonitor struct {
	lines chan string
	seq   int
}

// startMonitor opens a MONITOR connection to addr; tb.Cleanup closes it and
// waits for its reader.
func startMonitor(tb testing.TB, addr string) *redisMonitor {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("monitor: dial: %v", err)
	}
	r := bufio.NewReader(conn)
	if _, err := conn.Write([]byte("MONITOR\r\n")); err != nil {
		tb.Fatalf("monitor: %v", err)
	}
	if ok, err := r.ReadString('\n'); err != nil || ok != "+OK\r\n" {
		tb.Fatalf("monitor: reply %q, %v", ok, err)
	}
	m := &redisMonitor{lines: make(chan string, 4096)}
	go func() { // ends when Cleanup closes conn
		defer close(m.lines)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			m.lines <- strings.TrimSuffix(strings.TrimPrefix(l, "+"), "\r\n")
		}
	}()
	tb.Cleanup(func() {
		_ = conn.Close()
		for range m.lines {
		}
	})
	return m
}

// during returns the commands Redis executed for the client at addr while
// run ran, as lower-case names, and those scripts called, as "lua:name".
// ctrl brackets run with two ECHOs, so that the feed's end is known.
func (m *redisMonitor) during(tb testing.TB, ctrl *redis.Client, addr string, run func()) []string {
	tb.Helper()
	ctx := context.Background()
	m.seq++
	begin, end := fmt.Sprintf("begin-%d", m.seq), fmt.Sprintf("end-%d", m.seq)
	if err := ctrl.Echo(ctx, begin).Err(); err != nil {
		tb.Fatal(err)
	}
	run()
	if err := ctrl.Echo(ctx, end).Err(); err != nil {
		tb.Fatal(err)
	}
	var got []string
	in := false
	timeout := time.After(waitLimit)
	for {
		var l string
		select {
		case l = <-m.lines:
		case <-timeout:
			tb.Fatalf("monitor: %q not seen within %s", end, waitLimit)
		}
		// 1700000000.123456 [0 127.0.0.1:50000] "get" "key"
		_, rest, _ := strings.Cut(l, " [")
		src, cmd, _ := strings.Cut(rest, "] ")
		_, src, _ = strings.Cut(src, " ")
		name, _, _ := strings.Cut(cmd, " ")
		name = strings.ToLower(strings.Trim(name, `"`))
		switch {
		case name == "echo" && strings.Contains(cmd, `"`+begin+`"`):
			in = true
		case name == "echo" && strings.Contains(cmd, `"`+end+`"`):
			return got
		case in && src == "lua":
			got = append(got, "lua:"+name)
		case in && src == addr:
			got = append(got, name)
		}
	}
}

// clientAddr returns the address Redis sees for c's (only) connection.
func clientAddr(tb testing.TB, c *redis.Client) string {
	tb.Helper()
	info, err := c.Do(context.Background(), "CLIENT", "INFO").Text()
	if err != nil {
		tb.Fatal(err)
	}
	for _, f := range strings.Fields(info) {
		if a, ok := strings.CutPrefix(f, "addr="); ok {
			return a
		}
	}
	tb.Fatalf("CLIENT INFO without addr: %q", info)
	return ""
}

// TestFiller_RoundTripsSeenByRedis counts, in the server's MONITOR feed, the
// commands one Get costs: a hit is one GET and nothing else; a miss is GET,
// SET NX and one EVALSHA (the script's own GET and SET run inside Redis),
// whether the store succeeds or is voided by a delete; the first store
// after Redis starts also loads the script (EVALSHA refused, then EVAL).
func TestFiller_RoundTripsSeenByRedis(t *testing.T) {
	srv := testsrv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 1, MinIdleConns: 1, DisableIdentity: true})
	t.Cleanup(func() { _ = rdb.Close() })
	ctrl := srv.Client(t)
	addr := clientAddr(t, rdb)
	mon := startMonitor(t, srv.Addr())
	f := newFiller(t, rdb, subscriber.FillConfig{TTL: time.Minute, LeaseTTL: 10 * time.Second})
	var calls atomic.Int64

	first := mon.during(t, ctrl, addr, func() { get(t, f, "first", loadOf("v", &calls)) })
	if want := []string{"get", "set", "evalsha", "eval", "lua:get", "lua:set"}; !slices.Equal(first, want) {
		t.Errorf("the first miss on a fresh Redis: commands %q, want %q", first, want)
	}

	miss := mon.during(t, ctrl, addr, func() { get(t, f, "k", loadOf("v", &calls)) })
	if want := []string{"get", "set", "evalsha", "lua:get", "lua:set"}; !slices.Equal(miss, want) {
		t.Errorf("a miss: commands %q, want %q (3 round trips)", miss, want)
	}

	hit := mon.during(t, ctrl, addr, func() { get(t, f, "k", loadOf("other", &calls)) })
	if want := []string{"get"}; !slices.Equal(hit, want) {
		t.Errorf("a hit: commands %q, want %q", hit, want)
	}

	voided := mon.during(t, ctrl, addr, func() {
		get(t, f, "gone", func(ctx context.Context) ([]byte, error) {
			if err := ctrl.Unlink(ctx, "gone").Err(); err != nil {
				t.Error(err)
			}
			return []byte("old"), nil
		})
	})
	if want := []string{"get", "set", "evalsha", "lua:get"}; !slices.Equal(voided, want) {
		t.Errorf("a miss voided by a delete: commands %q, want %q (3 round trips)", voided, want)
	}
	if st := f.Stats(); st.Hits != 1 || st.Misses != 3 || st.Fills != 2 || st.FillsVoided != 1 {
		t.Errorf("Stats = %+v", st)
	}
}
