package subscriber_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/subscriber"
)

const (
	prefix           = subscriber.DefaultChannelPrefix
	heartbeatChannel = prefix + subscriber.HeartbeatSuffix
	waitLimit        = 15 * time.Second
)

// events records what a Subscriber hands to the application, in order.
type events struct {
	messages chan subscriber.Message
	resyncs  chan string
}

func newEvents() *events {
	return &events{messages: make(chan subscriber.Message, 100), resyncs: make(chan string, 100)}
}

func (e *events) onMessage(m subscriber.Message) { e.messages <- m }
func (e *events) onResync(reason string)         { e.resyncs <- reason }

// run starts s.Run on its own goroutine; tb.Cleanup cancels it and checks
// that Run returns nil promptly. The returned function does the same
// earlier.
func run(tb testing.TB, s *subscriber.Subscriber) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("Run returned %v after cancel, want nil", err)
			}
		case <-time.After(waitLimit):
			tb.Errorf("Run did not return within %v of cancel", waitLimit)
		}
	}
	tb.Cleanup(stop)
	return stop
}

func newSubscriber(tb testing.TB, cfg subscriber.Config, ev *events) *subscriber.Subscriber {
	tb.Helper()
	cfg.OnMessage = ev.onMessage
	cfg.OnResync = ev.onResync
	cfg.Logger = zaptest.NewLogger(tb)
	s, err := subscriber.New(cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return s
}

func waitResync(tb testing.TB, ev *events, want string, within time.Duration) {
	tb.Helper()
	select {
	case got := <-ev.resyncs:
		if got != want {
			tb.Fatalf("OnResync(%q), want %q", got, want)
		}
	case m := <-ev.messages:
		tb.Fatalf("got message %+v while waiting for resync %q", m, want)
	case <-time.After(within):
		tb.Fatalf("no OnResync(%q) within %v", want, within)
	}
}

func waitMessage(tb testing.TB, ev *events) subscriber.Message {
	tb.Helper()
	select {
	case m := <-ev.messages:
		return m
	case r := <-ev.resyncs:
		tb.Fatalf("got OnResync(%q) while waiting for a message", r)
	case <-time.After(waitLimit):
		tb.Fatalf("no message within %v", waitLimit)
	}
	return subscriber.Message{}
}

// expectQuiet fails if anything is delivered within d. It waits for the
// absence of an event, not for the system to reach a state.
func expectQuiet(tb testing.TB, ev *events, d time.Duration) {
	tb.Helper()
	select {
	case m := <-ev.messages:
		tb.Fatalf("unexpected message %+v", m)
	case r := <-ev.resyncs:
		tb.Fatalf("unexpected OnResync(%q)", r)
	case <-time.After(d):
	}
}

func publish(tb testing.TB, rdb redis.UniversalClient, channel, payload string) {
	tb.Helper()
	if err := rdb.Publish(context.Background(), channel, payload).Err(); err != nil {
		tb.Fatalf("PUBLISH %s: %v", channel, err)
	}
}

// messageWithLSN is the daemon's message with another LSN, to tell messages
// apart.
func messageWithLSN(lsn string) string {
	return strings.Replace(daemonMessage, `"lsn":"0/1A2B3C4"`, `"lsn":"`+lsn+`"`, 1)
}

func TestNew_Validation(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	ok := subscriber.Config{Client: rdb, OnMessage: func(subscriber.Message) {}, OnResync: func(string) {}}
	tests := []struct {
		name   string
		modify func(*subscriber.Config)
		field  string
	}{
		{"no client", func(c *subscriber.Config) { c.Client = nil }, "Client"},
		{"no OnMessage", func(c *subscriber.Config) { c.OnMessage = nil }, "OnMessage"},
		{"no OnResync", func(c *subscriber.Config) { c.OnResync = nil }, "OnResync"},
		{"sharded without channels", func(c *subscriber.Config) { c.Sharded = true }, "Channels"},
		{"channels without sharded", func(c *subscriber.Config) { c.Channels = []string{"x"} }, "Channels"},
		{"empty channel", func(c *subscriber.Config) { c.Sharded, c.Channels = true, []string{""} }, "Channels[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.modify(&cfg)
			_, err := subscriber.New(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("New error = %v, want one naming %s", err, tt.field)
			}
		})
	}
	if _, err := subscriber.New(ok); err != nil {
		t.Errorf("New(valid config) = %v", err)
	}
}

// TestSubscriber_Delivers: a daemon-format message reaches OnMessage fully
// decoded; heartbeats, malformed messages and channels outside the prefix
// do not, and do not stop later messages.
func TestSubscriber_Delivers(t *testing.T) {
	srv := testsrv.StartRedis(t)
	rdb := srv.Client(t)
	ev := newEvents()
	s := newSubscriber(t, subscriber.Config{Client: rdb}, ev)
	run(t, s)
	waitResync(t, ev, subscriber.ReasonStart, waitLimit)

	const ch = prefix + "shard:t1:42"
	publish(t, rdb, heartbeatChannel, daemonHeartbeat)
	publish(t, rdb, "elsewhere:shard:t1:42", daemonMessage)
	malformed := []string{`not json`, `[1]`, `{"op":"update"}`, `{"v":1}`, `{"v":1,"op":"update","keys":"k"}`}
	for _, p := range malformed {
		publish(t, rdb, ch, p)
	}
	publish(t, rdb, heartbeatChannel, `{"v":1,"op":"update","keys":["k"]}`) // not a heartbeat
	publish(t, rdb, ch, daemonMessage)

	got := waitMessage(t, ev)
	if want := wantDaemonMessage(ch); !equalMessage(got, want) {
		t.Errorf("OnMessage got\n %+v\nwant\n %+v", got, want)
	}
	st := s.Stats()
	if st.Heartbeats != 1 || st.Malformed != uint64(len(malformed)+1) || st.Messages != 1 || st.Resyncs != 1 {
		t.Errorf("Stats = %+v, want 1 heartbeat, %d malformed, 1 message, 1 resync", st, len(malformed)+1)
	}

	// Wide-form and truncate messages carry patterns and maybe no keys.
	publish(t, rdb, prefix+"shard:t1:*", `{"v":1,"op":"truncate","table":"public.shards","rule":"r","keys":[],`+
		`"patterns":["tenant:*:shard:*:structured"],"lsn":"0/20","xid":9,"commit_time":"2026-11-22T10:00:01.000000Z"}`)
	got = waitMessage(t, ev)
	if got.Op != subscriber.OpTruncate || got.Channel != prefix+"shard:t1:*" || len(got.Keys) != 0 ||
		len(got.Patterns) != 1 || got.Patterns[0] != "tenant:*:shard:*:structured" {
		t.Errorf("truncate message delivered as %+v", got)
	}
	expectQuiet(t, ev, 100*time.Millisecond)
}

// TestSubscriber_CustomPrefix: glob characters in the prefix are literal,
// so a prefix "app[1]:" does not also follow "app1:".
func TestSubscriber_CustomPrefix(t *testing.T) {
	srv := testsrv.StartRedis(t)
	rdb := srv.Client(t)
	ev := newEvents()
	run(t, newSubscriber(t, subscriber.Config{Client: rdb, ChannelPrefix: "app[1]:", HeartbeatTimeout: -1}, ev))
	waitResync(t, ev, subscriber.ReasonStart, waitLimit)
	publish(t, rdb, "app1:x", messageWithLSN("0/1"))
	publish(t, rdb, "app[1]:x", messageWithLSN("0/2"))
	if got := waitMessage(t, ev); got.LSN != "0/2" || got.Channel != "app[1]:x" {
		t.Errorf("got %+v, want the message on app[1]:x only", got)
	}
}

// TestSubscriber_ResyncOnRedisRestart: after a restart of redis-server the
// subscription comes back by itself, OnResync(reconnect) is called, and
// later messages arrive.
func TestSubscriber_ResyncOnRedisRestart(t *testing.T) {
	srv := testsrv.StartRedis(t)
	rdb := srv.Client(t)
	ev := newEvents()
	s := newSubscriber(t, subscriber.Config{Client: rdb, HeartbeatTimeout: -1}, ev)
	run(t, s)
	waitResync(t, ev, subscriber.ReasonStart, waitLimit)
	publish(t, rdb, prefix+"a", messageWithLSN("0/1"))
	if got := waitMessage(t, ev); got.LSN != "0/1" {
		t.Fatalf("before restart got %+v", got)
	}

	srv.Stop(t)
	// Let the subscriber see the server gone (EOF, then refused dials)
	// before it comes back.
	deadline := time.Now().Add(waitLimit)
	for s.Stats().Disconnects == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber did not notice that Redis stopped")
		}
		poll := time.NewTimer(20 * time.Millisecond)
		<-poll.C
	}
	expectQuiet(t, ev, 300*time.Millisecond) // no resync while Redis is down
	srv.Start(t)
	waitResync(t, ev, subscriber.ReasonReconnect, waitLimit)
	publish(t, rdb, prefix+"a", messageWithLSN("0/2"))
	if got := waitMessage(t, ev); got.LSN != "0/2" {
		t.Fatalf("after restart got %+v", got)
	}
	if st := s.Stats(); st.Disconnects < 1 || st.Resyncs != 2 {
		t.Errorf("Stats = %+v, want at least 1 disconnect and 2 resyncs", st)
	}

	// A connection killed while the server stays up: go-redis reconnects
	// at once, and that is a resync too.
	if err := rdb.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL: %v", err)
	}
	waitResync(t, ev, subscriber.ReasonReconnect, waitLimit)
	publish(t, rdb, prefix+"a", messageWithLSN("0/3"))
	if got := waitMessage(t, ev); got.LSN != "0/3" {
		t.Fatalf("after CLIENT KILL got %+v", got)
	}
}

// TestSubscriber_ResyncOnHeartbeatLoss: a gap of HeartbeatTimeout without
// heartbeat causes exactly one resync; resumed heartbeats re-arm the check.
func TestSubscriber_ResyncOnHeartbeatLoss(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv := testsrv.StartRedis(t)
	rdb := srv.Client(t)
	ev := newEvents()
	s := newSubscriber(t, subscriber.Config{Client: rdb, HeartbeatTimeout: timeout}, ev)
	run(t, s)
	waitResync(t, ev, subscriber.ReasonStart, waitLimit)

	beat := func(n int) {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range n {
			publish(t, rdb, heartbeatChannel, daemonHeartbeat)
			select {
			case r := <-ev.resyncs:
				t.Fatalf("OnResync(%q) while heartbeats arrive every 50ms", r)
			case <-tick.C:
			}
		}
	}

	for round := 1; round <= 2; round++ {
		beat(12) // 600ms of heartbeats, twice the timeout
		waitResync(t, ev, subscriber.ReasonHeartbeat, 10*timeout)
		expectQuiet(t, ev, 3*timeout) // once per outage
		if st := s.Stats(); st.Resyncs != uint64(1+round) {
			t.Errorf("round %d: Stats.Resyncs = %d, want %d", round, st.Resyncs, 1+round)
		}
	}
}

// TestSubscriber_ResyncOnHalfOpenConnection: when the network path dies
// without closing the connection, Receive reports nothing; the PING check
// finds the dead connection, replaces it and resyncs (the message published
// meanwhile is lost, which is why the resync is needed).
func TestSubscriber_ResyncOnHalfOpenConnection(t *testing.T) {
	srv := testsrv.StartRedis(t)
	rdb := srv.Client(t)
	proxy := startProxy(t, srv.Addr())
	viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr(), DisableIdentity: true})
	t.Cleanup(func() { _ = viaProxy.Close() })

	ev := newEvents()
	s := newSubscriber(t, subscriber.Config{Client: viaProxy, HeartbeatTimeout: -1, PingInterval: 200 * time.Millisecond}, ev)
	run(t, s)
	waitResync(t, ev, subscriber.ReasonStart, waitLimit)
	publish(t, rdb, prefix+"a", messageWithLSN("0/1"))
	if got := waitMessage(t, ev); got.LSN != "0/1" {
		t.Fatalf("got %+v", got)
	}

	proxy.Cut()
	publish(t, rdb, prefix+"a", messageWithLSN("0/2")) // lost in the black hole
	waitResync(t, ev, subscriber.ReasonReconnect, waitLimit)
	publish(t, rdb, prefix+"a", messageWithLSN("0/3"))
	if got := waitMessage(t, ev); got.LSN != "0/3" {
		t.Fatalf("after the cut got %+v, want 0/3", got)
	}
	if st := s.Stats(); st.Disconnects < 1 {
		t.Errorf("Stats.Disconnects = %d, want at least 1", st.Disconnects)
	}
}

// TestSubscriber_Sharded: with Sharded, explicit channels and the heartbeat
// channel are followed with SSUBSCRIBE and receive what SPUBLISH sends.
func TestSubscriber_Sharded(t *testing.T) {
	srv := testsrv.StartRedis(t)
	rdb := srv.Client(t)
	ev := newEvents()
	s := newSubscriber(t, subscriber.Config{
		Client: rdb, Sharded: true, Channels: []string{"shard:t1:42", "shard:t1:*"},
		HeartbeatTimeout: 500 * time.Millisecond,
	}, ev)
	run(t, s)
	waitResync(t, ev, subscriber.ReasonStart, waitLimit)

	ctx := context.Background()
	if err := rdb.SPublish(ctx, heartbeatChannel, daemonHeartbeat).Err(); err != nil {
		t.Fatalf("SPUBLISH: %v", err)
	}
	if err := rdb.SPublish(ctx, prefix+"shard:t1:43", messageWithLSN("0/1")).Err(); err != nil { // not followed
		t.Fatalf("SPUBLISH: %v", err)
	}
	if err := rdb.SPublish(ctx, prefix+"shard:t1:42", messageWithLSN("0/2")).Err(); err != nil {
		t.Fatalf("SPUBLISH: %v", err)
	}
	if err := rdb.SPublish(ctx, prefix+"shard:t1:*", messageWithLSN("0/3")).Err(); err != nil {
		t.Fatalf("SPUBLISH: %v", err)
	}
	for _, want := range []string{"0/2", "0/3"} {
		if got := waitMessage(t, ev); got.LSN != want {
			t.Fatalf("got %+v, want LSN %s", got, want)
		}
	}
	if st := s.Stats(); st.Heartbeats != 1 {
		t.Errorf("Stats.Heartbeats = %d, want 1", st.Heartbeats)
	}
	// The connection is subscribed to 3 shard channels; a reconnect is
	// recognised once all of them are confirmed again.
	if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL: %v", err)
	}
	waitResync(t, ev, subscriber.ReasonReconnect, waitLimit)
	expectQuiet(t, ev, 200*time.Millisecond) // one resync per reconnect, not one per channel
}

// TestSubscriber_Run: Run refuses to run twice at once, returns nil on
// cancel and closes its subscription connection.
func TestSubscriber_Run(t *testing.T) {
	srv := testsrv.StartRedis(t)
	rdb := srv.Client(t)
	ev := newEvents()
	s := newSubscriber(t, subscriber.Config{Client: rdb}, ev)
	stop := run(t, s)
	waitResync(t, ev, subscriber.ReasonStart, waitLimit)
	if n := pubsubClients(t, rdb); n != 1 {
		t.Fatalf("%d pub/sub connections while running, want 1", n)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("second concurrent Run returned nil")
	}
	stop()
	deadline := time.Now().Add(waitLimit)
	for pubsubClients(t, rdb) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pub/sub connection is still open after Run returned")
		}
		poll := time.NewTimer(20 * time.Millisecond)
		<-poll.C
	}
	// Run can start again, with a fresh start resync.
	run(t, s)
	waitResync(t, ev, subscriber.ReasonStart, waitLimit)
}

// TestSubscriber_ClientClosed: closing the Redis client under Run makes it
// return an error instead of retrying forever.
func TestSubscriber_ClientClosed(t *testing.T) {
	srv := testsrv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
	ev := newEvents()
	s := newSubscriber(t, subscriber.Config{Client: rdb}, ev)
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	waitResync(t, ev, subscriber.ReasonStart, waitLimit)
	_ = rdb.Close()
	select {
	case err := <-done:
		if !errors.Is(err, redis.ErrClosed) {
			t.Errorf("Run returned %v, want an error wrapping redis.ErrClosed", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Run did not return after the client was closed")
	}
}

// TestSubscriber_WiresCache: the documented wiring keeps a Cache in step.
func TestSubscriber_WiresCache(t *testing.T) {
	srv := testsrv.StartRedis(t)
	rdb := srv.Client(t)
	c := subscriber.NewCache(100)
	c.Set("cached-before-start", 1)
	applied := make(chan struct{}, 10)
	s, err := subscriber.New(subscriber.Config{
		Client:    rdb,
		OnMessage: func(m subscriber.Message) { c.Apply(m); applied <- struct{}{} },
		OnResync:  func(reason string) { c.Resync(reason); applied <- struct{}{} },
		Logger:    zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	run(t, s)
	wait := func() {
		t.Helper()
		select {
		case <-applied:
		case <-time.After(waitLimit):
			t.Fatal("nothing applied")
		}
	}
	wait() // start resync
	if c.Len() != 0 {
		t.Fatal("entry cached before the subscription survived the start resync")
	}
	fill(c, "tenant:t1:shard:42:structured", "tenant:t1:vsearch:q", "tenant:t2:vsearch:q")
	publish(t, rdb, prefix+"shard:t1:42", daemonMessage)
	wait()
	if got := remaining(c); len(got) != 1 || got[0] != "tenant:t2:vsearch:q" {
		t.Errorf("after the message the cache holds %q, want [tenant:t2:vsearch:q]", got)
	}
}

func pubsubClients(tb testing.TB, rdb *redis.Client) int {
	tb.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		tb.Fatalf("CLIENT LIST: %v", err)
	}
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		if strings.Contains(line, " psub=1") || strings.Contains(line, " sub=1") {
			n++
		}
	}
	return n
}
