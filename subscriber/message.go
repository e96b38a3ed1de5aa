package subscriber

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Operations that appear in the "op" field of a message.
const (
	OpInsert    = "insert"
	OpUpdate    = "update"
	OpDelete    = "delete"
	OpTruncate  = "truncate"
	OpHeartbeat = "heartbeat"
)

// MessageVersion is the message format version this package understands
// (the "v" field). Messages of a higher version are still decoded and
// delivered; see Message.V.
const MessageVersion = 1

// DefaultChannelPrefix is the daemon's default channel_prefix.
const DefaultChannelPrefix = "cache:invalidate:"

// HeartbeatSuffix is appended to the channel prefix to form the channel on
// which the daemon publishes heartbeats.
const HeartbeatSuffix = "_heartbeat"

// Message is one invalidation published by the daemon: every Redis key in
// Keys and every key matching one of Patterns has been deleted from Redis,
// every version key in Namespaces has been bumped, and an in-process copy
// of any of them must be dropped too.
//
// It is decoded from the JSON the daemon publishes, for example
//
//	{"v":1,"op":"update","table":"public.shards","rule":"shard-structured",
//	 "keys":["tenant:t1:shard:42:structured"],"patterns":["tenant:t1:vsearch:*"],
//	 "lsn":"0/1A2B3C4","xid":1234,"commit_time":"2026-11-22T10:00:00.123456Z"}
//
// Fields the daemon may add later are ignored. Delivery is at least once: the
// same message may arrive more than once, so handling it must be idempotent
// (evicting is).
type Message struct {
	// V is the format version. A subscriber built for version
	// MessageVersion cannot know what a higher version means; Cache.Apply
	// therefore drops the whole cache for such a message.
	V int `json:"v"`
	// Op is the last operation on the channel in the transaction: OpInsert,
	// OpUpdate, OpDelete or OpTruncate.
	Op string `json:"op"`
	// Table is the schema-qualified table, "public.shards".
	Table string `json:"table"`
	// Rule is the name of the rule that rendered Keys and Patterns.
	Rule string `json:"rule"`
	// Keys are exact Redis key names. It may be empty when Patterns is not.
	Keys []string `json:"keys"`
	// Patterns are Redis glob patterns (the syntax of SCAN MATCH, see
	// MatchPattern) of wide invalidations: a rule's patterns, its wide form,
	// or a TRUNCATE. Values taken from rows are escaped with '\', so a
	// pattern never matches more than the rule intends.
	Patterns []string `json:"patterns"`
	// Namespaces are version keys (key prefix included) that the daemon
	// bumped with INCR: the wide form of a rule with a namespace. Every
	// value stored under them before (Filler.GetInNamespace,
	// Cache.GetOrLoadInNamespace) is void. Absent from most messages.
	Namespaces []string `json:"namespaces,omitempty"`
	// LSN is the transaction's commit LSN as PostgreSQL prints it,
	// "0/1A2B3C4".
	LSN string `json:"lsn"`
	// Xid is the PostgreSQL transaction id.
	Xid uint32 `json:"xid"`
	// CommitTime is the transaction's commit time (UTC).
	CommitTime time.Time `json:"commit_time"`
	// Channel is the Redis channel the message arrived on, prefix included.
	// It is not part of the JSON.
	Channel string `json:"-"`
}

// ErrMalformed is wrapped by every error DecodeMessage returns.
var ErrMalformed = errors.New("malformed invalidation message")

// DecodeMessage decodes payload, the JSON body of a message that arrived on
// channel. It returns an error wrapping ErrMalformed when payload is not a
// JSON object of the published form: a field has the wrong type, "v" is
// missing or below 1, or "op" is missing. A heartbeat decodes with Op ==
// OpHeartbeat and only V, Op, LSN and Channel set (its "time" is ignored). Unknown fields and
// unknown ops are accepted, so that a newer daemon does not break an older
// subscriber.
func DecodeMessage(channel string, payload []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(payload, &m); err != nil {
		return Message{}, fmt.Errorf("%w on %q: %w", ErrMalformed, channel, err)
	}
	m.Channel = channel
	switch {
	case m.V < 1:
		return Message{}, fmt.Errorf("%w on %q: missing or invalid \"v\" (%d)", ErrMalformed, channel, m.V)
	case m.Op == "":
		return Message{}, fmt.Errorf("%w on %q: missing \"op\"", ErrMalformed, channel)
	}
	return m, nil
}
