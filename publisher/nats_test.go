package publisher

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// TestNATSSink_JetStreamResumesAfterAckedWindows fails a JetStream batch
// after two of its windows were acknowledged (the stream refuses more than
// two windows of messages), then lets the stream take the rest: the retry
// of the same batch sends only what was not acknowledged, and the stream
// ends with every message once.
func TestNATSSink_JetStreamResumesAfterAckedWindows(t *testing.T) {
	ns := testsrv.StartNATS(t, true)
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	rt, row := queueRouter(t, 0)
	rt.RenderSubjects()
	const msgs = 3000 // one channel per row: three windows, the last one short
	txn := rt.NewTxn(1)
	for i := range msgs {
		txn.Add(row("t"+strconv.Itoa(i), i))
	}
	txn.Commit()
	batch := []Applied{{Txn: txn, CommitLSN: 100, EndLSN: 150, Xid: 1, CommitTime: time.Now()}}

	streamCfg := jetstream.StreamConfig{
		Name:       "INV",
		Subjects:   []string{rt.SubjectPrefix() + ">"},
		Duplicates: time.Minute,
		MaxMsgs:    2 * jsWindow,
		Discard:    jetstream.DiscardNew,
		Storage:    jetstream.MemoryStorage,
	}
	if _, err := js.CreateStream(ctx, streamCfg); err != nil {
		t.Fatal(err)
	}
	// what core subscribers of the stream's subjects see: every publish.
	// A marker published after a Publish comes back through the same
	// subscription, in order, once everything before it was counted.
	var seen atomic.Int64
	marker := "test_marker" // outside the stream's subjects
	markers := make(chan struct{}, 1)
	sub, err := nc.Subscribe(">", func(m *nats.Msg) {
		switch {
		case m.Subject == marker:
			markers <- struct{}{}
		case strings.HasPrefix(m.Subject, rt.SubjectPrefix()):
			seen.Add(1)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	settle := func() int64 {
		t.Helper()
		if err := nc.Publish(marker, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case <-markers:
		case <-ctx.Done():
			t.Fatal("the marker never came back")
		}
		return seen.Load()
	}

	sink := NewNATSSink(nc, js, "slot", rt.SubjectPrefix(), 10*time.Second)
	if _, err := sink.Publish(ctx, batch); err == nil {
		t.Fatal("Publish into a stream that takes two windows succeeded, want an ack error")
	}
	first := settle()

	streamCfg.MaxMsgs = -1
	if _, err := js.UpdateStream(ctx, streamCfg); err != nil {
		t.Fatal(err)
	}
	n, err := sink.Publish(ctx, batch)
	if err != nil {
		t.Fatalf("Publish again: %v", err)
	}
	if n != msgs {
		t.Errorf("Publish again returned %d, want the batch's %d messages", n, msgs)
	}
	if resent, want := settle()-first, int64(msgs-2*jsWindow); resent != want {
		t.Errorf("the retry sent %d messages, want %d: the two acknowledged windows must not be sent again", resent, want)
	}
	s, err := js.Stream(ctx, "INV")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != msgs {
		t.Errorf("the stream holds %d messages, want %d", info.State.Msgs, msgs)
	}

	// a different batch is sent whole, even right after a failure
	other := []Applied{{Txn: txn, CommitLSN: 200, EndLSN: 250, Xid: 2, CommitTime: time.Now()}}
	before := settle()
	if _, err := sink.Publish(ctx, other); err != nil {
		t.Fatal(err)
	}
	if got := settle() - before; got != msgs {
		t.Errorf("a new batch sent %d messages, want %d", got, msgs)
	}
}
