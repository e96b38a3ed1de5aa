package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// natsCollector records every message on a subject filter.
type natsCollector struct {
	mu   sync.Mutex
	msgs []*nats.Msg
}

func collectNATS(t *testing.T, url, filter string) (*nats.Conn, *natsCollector) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, subscribeNATS(t, nc, filter)
}

// subscribeNATS records every message on filter; it returns once the
// server has the subscription.
func subscribeNATS(t *testing.T, nc *nats.Conn, filter string) *natsCollector {
	t.Helper()
	c := &natsCollector{}
	if _, err := nc.Subscribe(filter, func(m *nats.Msg) {
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *natsCollector) subjects() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.msgs {
		out = append(out, m.Subject)
	}
	return out
}

func (c *natsCollector) find(subject string) *nats.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.msgs {
		if m.Subject == subject {
			return m
		}
	}
	return nil
}

func TestNATS_CoreSubjects(t *testing.T) {
	ns := testsrv.StartNATS(t, false)
	f := newFixture(t, "INVALIDATOR_NATS_URL="+ns.URL(), "INVALIDATOR_HEARTBEAT_INTERVAL=200ms")
	_, got := collectNATS(t, ns.URL(), "cache.invalidate.>")
	f.startReady()
	f.exec(`INSERT INTO users VALUES ('a.b c', 1, 'x'), ('t1', 2, 'y'), ('x>*', 3, 'z')`)
	f.sync()
	for _, subj := range []string{"cache.invalidate.user.a%2Eb%20c.1", "cache.invalidate.user.t1.2", "cache.invalidate.user.x%3E%2A.3"} {
		var m *nats.Msg
		eventually(t, waitLong, "NATS message on "+subj, func() bool { m = got.find(subj); return m != nil })
		var body map[string]any
		if err := json.Unmarshal(m.Data, &body); err != nil || body["op"] != "insert" || body["table"] != "public.users" {
			t.Errorf("%s: payload %s (%v)", subj, m.Data, err)
		}
	}
	eventually(t, waitLong, "a heartbeat on NATS", func() bool { return got.find("cache.invalidate._heartbeat") != nil })
	for _, s := range got.subjects() {
		if strings.Contains(s, "..") || strings.Contains(s, " ") {
			t.Errorf("invalid subject %q", s)
		}
	}
}

// jsMessages returns every message stored in a stream.
func jsMessages(t *testing.T, url, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("get %d: %v", seq, err)
		}
		out = append(out, m)
	}
	return out
}

func TestNATS_DownAndBack(t *testing.T) {
	ns := testsrv.StartNATS(t, true)
	f := newFixture(t, "INVALIDATOR_NATS_URL="+ns.URL(), "INVALIDATOR_NATS_JETSTREAM=true", "INVALIDATOR_NATS_STREAM=INVALIDATIONS")
	d := f.startReady()
	f.sync()
	ns.Stop(t)
	f.set("tenant:n:user:1:profile")
	f.exec(`INSERT INTO users VALUES ('n', 1, 'a')`)
	end := f.currentLSN()
	eventually(t, waitLong, "the NATS stage to fail", func() bool { return d.metric(t, "invalidator_errors_total", `kind="nats"`) >= 1 })
	if f.exists("tenant:n:user:1:profile") {
		t.Error("Redis is applied first: the key should be gone even while NATS is down")
	}
	if c := f.slotConfirmed(); c >= end {
		t.Errorf("confirmed %s past a transaction NATS does not have (end %s)", c, end)
	}
	ns.Start(t)
	eventually(t, waitLong, "the slot to confirm after NATS is back", func() bool { return f.slotConfirmed() >= end })
	found := false
	for _, m := range jsMessages(t, ns.URL(), "INVALIDATIONS") {
		found = found || m.Subject == "cache.invalidate.user.n.1"
	}
	if !found {
		t.Error("the message of the outage is not in the stream")
	}
}

// TestNATS_JetStreamResend makes the daemon send the same transactions
// twice, as after a crash between publishing and confirming: JetStream
// keeps exactly one message per entity and transaction.
func TestNATS_JetStreamResend(t *testing.T) {
	ns := testsrv.StartNATS(t, true)
	f := newFixture(t, "INVALIDATOR_NATS_URL="+ns.URL(), "INVALIDATOR_NATS_JETSTREAM=true", "INVALIDATOR_NATS_STREAM=INVALIDATIONS")
	if code, out, errOut := f.cli("setup"); code != 0 {
		t.Fatalf("setup: %s%s", out, errOut)
	}
	backup := f.db + "_backup"
	f.exec(fmt.Sprintf(`SELECT pg_copy_logical_replication_slot('%s', '%s')`, f.db, backup))
	t.Cleanup(func() { f.exec(fmt.Sprintf(`SELECT pg_drop_replication_slot('%s')`, backup)) })

	d := f.startReady()
	f.exec(`INSERT INTO users VALUES ('j', 1, 'a'), ('j', 2, 'b')`)
	f.exec(`UPDATE users SET name = 'c' WHERE id = 1`)
	f.sync()
	firstRun := d.metric(t, "invalidator_messages_published_total", `sink="nats"`)
	if code := d.stop(t); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	before := jsMessages(t, ns.URL(), "INVALIDATIONS")

	// rewind: the slot is back where it was before those transactions
	f.exec(fmt.Sprintf(`SELECT pg_drop_replication_slot('%s'); SELECT pg_copy_logical_replication_slot('%s', '%s')`, f.db, backup, f.db))
	d = f.startReady()
	f.sync()
	resent := d.metric(t, "invalidator_messages_published_total", `sink="nats"`)
	if resent < firstRun {
		t.Fatalf("second run published %v messages to NATS, want the %v of the first run again", resent, firstRun)
	}
	after := jsMessages(t, ns.URL(), "INVALIDATIONS")
	ids := map[string]int{}
	for _, m := range after {
		ids[m.Header.Get("Nats-Msg-Id")]++
	}
	for id, n := range ids {
		if n != 1 || id == "" {
			t.Errorf("Nats-Msg-Id %q stored %d times", id, n)
		}
	}
	count := func(msgs []*jetstream.RawStreamMsg, subject string) int {
		n := 0
		for _, m := range msgs {
			if m.Subject == subject {
				n++
			}
		}
		return n
	}
	for subj, want := range map[string]int{"cache.invalidate.user.j.1": 2, "cache.invalidate.user.j.2": 1} {
		if got := count(after, subj); got != want || count(before, subj) != want {
			t.Errorf("%s: %d stored before the re-send, %d after; want %d (one per transaction)", subj, count(before, subj), got, want)
		}
	}
	// only the new sentinel transaction added messages
	if len(after) != len(before)+1 {
		t.Errorf("stream grew from %d to %d messages; only the new sentinel should have been added", len(before), len(after))
	}
}
