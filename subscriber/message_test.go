package subscriber_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cachewire/invalidator/subscriber"
)

// daemonMessage is a message exactly as publisher.AppendMessage writes it.
const daemonMessage = `{"v":1,"op":"update","table":"public.shards","rule":"shard-structured",` +
	`"keys":["tenant:t1:shard:42:structured"],"patterns":["tenant:t1:vsearch:*"],` +
	`"lsn":"0/1A2B3C4","xid":1234,"commit_time":"2026-11-22T10:00:00.123456Z"}`

const daemonHeartbeat = `{"v":1,"op":"heartbeat","lsn":"0/1A2B3C4","time":"2026-11-22T10:00:00.123456Z"}`

func wantDaemonMessage(channel string) subscriber.Message {
	return subscriber.Message{
		V:          1,
		Op:         subscriber.OpUpdate,
		Table:      "public.shards",
		Rule:       "shard-structured",
		Keys:       []string{"tenant:t1:shard:42:structured"},
		Patterns:   []string{"tenant:t1:vsearch:*"},
		LSN:        "0/1A2B3C4",
		Xid:        1234,
		CommitTime: time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC),
		Channel:    channel,
	}
}

func equalMessage(a, b subscriber.Message) bool {
	return a.V == b.V && a.Op == b.Op && a.Table == b.Table && a.Rule == b.Rule &&
		slices.Equal(a.Keys, b.Keys) && slices.Equal(a.Patterns, b.Patterns) &&
		a.LSN == b.LSN && a.Xid == b.Xid && a.CommitTime.Equal(b.CommitTime) && a.Channel == b.Channel
}

func TestDecodeMessage(t *testing.T) {
	const ch = "cache:invalidate:shard:t1:42"
	got, err := subscriber.DecodeMessage(ch, []byte(daemonMessage))
	if err != nil {
		t.Fatalf("DecodeMessage: %v", err)
	}
	if want := wantDaemonMessage(ch); !equalMessage(got, want) {
		t.Errorf("DecodeMessage:\n got %+v\nwant %+v", got, want)
	}

	hb, err := subscriber.DecodeMessage("cache:invalidate:_heartbeat", []byte(daemonHeartbeat))
	if err != nil {
		t.Fatalf("DecodeMessage(heartbeat): %v", err)
	}
	if hb.Op != subscriber.OpHeartbeat || hb.LSN != "0/1A2B3C4" || hb.V != 1 {
		t.Errorf("heartbeat decoded as %+v", hb)
	}

	// Fields a later daemon may add are ignored; truncate carries empty keys.
	trunc, err := subscriber.DecodeMessage(ch, []byte(`{"v":1,"op":"truncate","table":"public.shards","rule":"r",`+
		`"keys":[],"patterns":["tenant:*:shard:*:structured"],"lsn":"0/10","xid":7,`+
		`"commit_time":"2026-11-22T10:00:00.000000Z","new_field":{"x":[1,2]}}`))
	if err != nil {
		t.Fatalf("DecodeMessage(truncate with unknown field): %v", err)
	}
	if trunc.Op != subscriber.OpTruncate || len(trunc.Keys) != 0 || !slices.Equal(trunc.Patterns, []string{"tenant:*:shard:*:structured"}) {
		t.Errorf("truncate decoded as %+v", trunc)
	}
}

func TestDecodeMessage_Malformed(t *testing.T) {
	for name, payload := range map[string]string{
		"not JSON":          `not json`,
		"truncated":         daemonMessage[:40],
		"array":             `[1,2]`,
		"null":              `null`,
		"empty":             ``,
		"missing v":         `{"op":"update","keys":["k"]}`,
		"zero v":            `{"v":0,"op":"update","keys":["k"]}`,
		"missing op":        `{"v":1,"keys":["k"]}`,
		"keys not an array": `{"v":1,"op":"update","keys":"k"}`,
		"xid negative":      `{"v":1,"op":"update","keys":["k"],"xid":-1}`,
		"bad commit_time":   `{"v":1,"op":"update","keys":["k"],"commit_time":"yesterday"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := subscriber.DecodeMessage("c", []byte(payload))
			if !errors.Is(err, subscriber.ErrMalformed) {
				t.Errorf("DecodeMessage(%q) error = %v, want ErrMalformed", payload, err)
			}
		})
	}
}
