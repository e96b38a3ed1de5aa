package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/internal/benchrules"
	"github.com/cachewire/invalidator/internal/testsrv"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

// The floor sends what the daemon sends for the same row: the same
// channel, subject and payload, so its messages have the same sizes.
func TestFloorBatch_AsTheDaemonRenders(t *testing.T) {
	rules, err := router.ParseRules("bench.yaml", []byte(benchrules.YAML))
	if err != nil {
		t.Fatal(err)
	}
	rt := router.New(rules, 0, nil)
	rt.RenderSubjects()
	rel := cdc.NewRelation("public.shards", []cdc.Column{{Name: "tenant_id"}, {Name: "id"}, {Name: "payload"}})
	txn := rt.NewTxn(1)
	txn.Add(&cdc.Change{Op: cdc.OpUpdate, Rel: rel, New: cdc.Tuple{
		{Kind: cdc.DatumText, Data: []byte("t7")}, {Kind: cdc.DatumText, Data: []byte("42")}, {Kind: cdc.DatumText, Data: []byte("x")}}})
	txn.Commit()
	res := txn.Result()
	if res.NumMessages() != 1 {
		t.Fatalf("%d messages, want 1", res.NumMessages())
	}
	m := res.Message(0)
	at := time.Date(2026, 12, 8, 1, 0, 0, 123456000, time.UTC)
	lsn, xid := cdc.LSN(0x1_2345_6789), uint32(1<<20+5)
	want := publisher.AppendMessage(nil, &m, lsn, xid, at)

	got := floorBatch(nil, [][2]int{{7, 42}}, lsn, xid, at)
	if len(got) != 1 {
		t.Fatalf("floorBatch gave %d messages, want 1", len(got))
	}
	f := got[0]
	if f.channel != rules.ChannelPrefix+m.Channel || f.subject != m.Subject || f.key != m.Keys[0] || !bytes.Equal(f.payload, want) {
		t.Errorf("floorBatch = channel %q subject %q key %q payload %s\nwant channel %q subject %q key %q payload %s",
			f.channel, f.subject, f.key, f.payload, rules.ChannelPrefix+m.Channel, m.Subject, m.Keys[0], want)
	}
}

// The NATS subscriber records what arrives on its subject, parsed as the
// Redis one parses it, and forgets it on reset.
func TestNATSSubscriber_Records(t *testing.T) {
	srv := testsrv.StartNATS(t, false)
	subNC, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer subNC.Close()
	sub, err := subscribeNATS(subNC, subjectPrefix+"shard.>")
	if err != nil {
		t.Fatal(err)
	}
	pubNC, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pubNC.Close()
	at := time.Now()
	msgs := floorBatch(nil, [][2]int{{1, 1}, {2, 2}, {3, 3}}, cdc.LSN(0x10), 77, at)
	for _, m := range msgs {
		if err := pubNC.Publish(m.subject, m.payload); err != nil {
			t.Fatal(err)
		}
	}
	if err := pubNC.Publish(subjectPrefix+"other.x", msgs[0].payload); err != nil { // not subscribed
		t.Fatal(err)
	}
	if err := pubNC.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	var recs []record
	for len(recs) < len(msgs) && time.Now().Before(deadline) {
		recs, _ = sub.from(0)
		time.Sleep(5 * time.Millisecond) // polling, with a deadline
	}
	if len(recs) != len(msgs) {
		t.Fatalf("%d records, want %d", len(recs), len(msgs))
	}
	for _, r := range recs {
		if r.xid != 77 || r.lsn != 0x10 || r.commitUS != at.UnixMicro() || r.wide || r.atNS < at.UnixNano() {
			t.Errorf("record %+v: want xid 77, lsn 0x10, commit %d, not wide", r, at.UnixMicro())
		}
	}
	sub.reset()
	if recs, n := sub.from(0); len(recs) != 0 || n != 0 {
		t.Errorf("after reset: %d records, count %d", len(recs), n)
	}
}
