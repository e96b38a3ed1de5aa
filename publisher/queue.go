package publisher

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/resp"
)

// commands is where an Apply queues its commands, sent in round trips of
// bounded size: on a single Redis, straight onto the Publisher's own
// connection (directQueue); on a Redis Cluster, into a go-redis pipeline
// that routes each command to its node (goredisQueue). Commands reach a
// single Redis in the order they are queued.
type commands interface {
	unlink(ctx context.Context, keys []string) error
	// incr bumps a namespace's version key.
	incr(ctx context.Context, key string) error
	// publish sends payload on prefix+channel with kind's command
	// (cmdPublish or cmdSPublish).
	publish(ctx context.Context, kind cmdKind, prefix, channel string, payload []byte) error
	xadd(ctx context.Context, stream string, maxLen int64, e *journalEntry) error
	// exec sends what is queued and reads the replies.
	exec(ctx context.Context) error
	// deleted is the sum of the UNLINK replies read so far.
	deleted() int64
}

// maxPipeline bounds the commands sent in one round trip, so that a huge
// transaction's pipeline does not hold every command in memory at once.
// Commands still reach a single Redis in order, and on a cluster the
// deletes are acknowledged before any message is sent: every key is
// unlinked before any message of the batch is published.
const maxPipeline = 4096

// maxPipelineKeys bounds the keys the UNLINKs of one round trip carry: a
// huge transaction's keys would otherwise all be queued before its first
// round trip (through go-redis, each boxed as a command argument: 32 bytes
// a key on top of the key itself, 6 MB for 200,000 keys).
const maxPipelineKeys = 16384

// queue returns the commands of a new Apply.
func (p *Publisher) queue(ctx context.Context) (commands, error) {
	if p.direct == nil {
		p.pipe.start(p.rdb.Pipeline())
		return &p.pipe, nil
	}
	if err := p.Connect(ctx); err != nil {
		return nil, err
	}
	p.wire.start(p.conn)
	return &p.wire, nil
}

// closeConn drops the Publisher's connection after an error that may have
// left it out of step with the server.
func (p *Publisher) closeConn() { _ = p.Close() }

// replyError is an error reply to one command of a round trip.
type replyError struct {
	cmd string
	err resp.Error
}

func (e *replyError) Error() string { return "redis " + e.cmd + ": " + string(e.err) }
func (e *replyError) Unwrap() error { return e.err }

func isReplyError(err error) bool {
	var re *replyError
	return errors.As(err, &re)
}

// directOptions are how the Publisher reaches the Redis that c reaches.
func directOptions(o *redis.Options) *resp.Options {
	return &resp.Options{
		Network: o.Network, Addr: o.Addr, Dial: o.Dialer,
		Username: o.Username, Password: o.Password, DB: o.DB, ClientName: o.ClientName,
		ReadTimeout: max(o.ReadTimeout, 0), WriteTimeout: max(o.WriteTimeout, 0),
	}
}

// directQueue writes commands in RESP straight into a buffer, sent
// whenever it fills and at exec: no allocation per command.
type directQueue struct {
	conn  *resp.Conn
	buf   []byte
	kinds []cmdKind // of the commands sent or buffered, not yet answered
	keys  int       // keys in the UNLINKs of this round trip
	n     int64     // keys deleted
}

// cmdKind tells the replies of a round trip apart.
type cmdKind uint8

const (
	cmdUnlink cmdKind = iota
	cmdPublish
	cmdSPublish
	cmdXAdd
	cmdIncr
)

func (k cmdKind) String() string {
	return [...]string{"UNLINK", "PUBLISH", "SPUBLISH", "XADD", "INCR"}[k]
}

// directFlush is how much is buffered before it is written; a bulk
// argument longer than directInline goes to the connection as it is,
// without a copy.
const (
	directFlush  = 64 << 10
	directInline = 16 << 10
)

func (q *directQueue) start(c *resp.Conn) {
	q.conn, q.buf, q.kinds, q.keys, q.n = c, q.buf[:0], q.kinds[:0], 0, 0
}

func (q *directQueue) deleted() int64 { return q.n }

func (q *directQueue) unlink(ctx context.Context, keys []string) error {
	q.buf = resp.AppendString(resp.AppendCommand(q.buf, 1+len(keys)), "UNLINK")
	for _, k := range keys {
		q.buf = resp.AppendString(q.buf, k)
	}
	q.keys += len(keys)
	return q.queued(ctx, cmdUnlink)
}

func (q *directQueue) incr(ctx context.Context, key string) error {
	q.buf = resp.AppendString(resp.AppendString(resp.AppendCommand(q.buf, 2), "INCR"), key)
	return q.queued(ctx, cmdIncr)
}

func (q *directQueue) publish(ctx context.Context, kind cmdKind, prefix, channel string, payload []byte) error {
	q.buf = resp.AppendString(resp.AppendCommand(q.buf, 3), kind.String())
	q.buf = resp.AppendStrings(q.buf, prefix, channel)
	if err := q.bulk(ctx, payload); err != nil {
		return err
	}
	return q.queued(ctx, kind)
}

func (q *directQueue) xadd(ctx context.Context, stream string, maxLen int64, e *journalEntry) error {
	args := 6 + 16
	if e.server.SystemID != "" {
		args += 4
	}
	if e.namespaces != nil {
		args += 2
	}
	q.buf = resp.AppendString(resp.AppendCommand(q.buf, args), "XADD")
	q.buf = resp.AppendString(q.buf, stream)
	q.buf = resp.AppendString(resp.AppendString(q.buf, "MAXLEN"), "~")
	q.buf = resp.AppendInt(q.buf, maxLen)
	q.buf = resp.AppendString(q.buf, "*")
	q.buf = resp.AppendBulk(resp.AppendString(q.buf, "lsn"), e.lsn)
	q.buf = resp.AppendBulk(resp.AppendString(q.buf, "end_lsn"), e.endLSN)
	q.buf = resp.AppendInt(resp.AppendString(q.buf, "xid"), int64(e.xid))
	q.buf = resp.AppendBulk(resp.AppendString(q.buf, "commit_time"), e.commitTime)
	if e.server.SystemID != "" {
		for _, v := range [...]string{"system_id", e.server.SystemID, "database", e.server.Database} {
			q.buf = resp.AppendString(q.buf, v)
		}
	}
	for _, f := range [...]struct {
		name  string
		value []byte
	}{{"keys", e.keys}, {"patterns", e.patterns}, {"channels", e.channels}, {"messages", e.messages}, {"namespaces", e.namespaces}} {
		if f.value == nil {
			continue
		}
		q.buf = resp.AppendString(q.buf, f.name)
		if err := q.bulk(ctx, f.value); err != nil {
			return err
		}
	}
	return q.queued(ctx, cmdXAdd)
}

// bulk appends b as a bulk string; a long one is written as it is.
func (q *directQueue) bulk(ctx context.Context, b []byte) error {
	if len(b) <= directInline {
		q.buf = resp.AppendBulk(q.buf, b)
		return nil
	}
	q.buf = resp.AppendBulkHeader(q.buf, len(b))
	if err := q.write(ctx); err != nil {
		return err
	}
	if err := q.conn.Write(ctx, b); err != nil {
		return err
	}
	q.buf = append(q.buf, '\r', '\n')
	return nil
}

// queued records a command appended to the buffer, writing the buffer
// when it is full and ending the round trip when it is long enough.
func (q *directQueue) queued(ctx context.Context, kind cmdKind) error {
	q.kinds = append(q.kinds, kind)
	if len(q.kinds) >= maxPipeline || q.keys >= maxPipelineKeys {
		return q.exec(ctx)
	}
	if len(q.buf) >= directFlush {
		return q.write(ctx)
	}
	return nil
}

func (q *directQueue) write(ctx context.Context) error {
	if len(q.buf) == 0 {
		return nil
	}
	err := q.conn.Write(ctx, q.buf)
	if cap(q.buf) > maxScratch {
		q.buf = nil
	} else {
		q.buf = q.buf[:0]
	}
	return err
}

func (q *directQueue) exec(ctx context.Context) error {
	if len(q.kinds) == 0 {
		return nil
	}
	if err := q.write(ctx); err != nil {
		return err
	}
	var first error
	err := q.conn.ReadReplies(ctx, len(q.kinds), func(i int, r resp.Reply) {
		switch {
		case r.Kind == resp.ErrorReply:
			if first == nil {
				first = &replyError{cmd: q.kinds[i].String(), err: r.Err}
			}
		case q.kinds[i] == cmdUnlink && r.Kind == resp.Integer:
			q.n += r.Int
		}
	})
	q.kinds, q.keys = q.kinds[:0], 0
	if err != nil {
		return err
	}
	return first
}

// goredisQueue queues commands in a go-redis pipeline (a Redis Cluster's:
// it sends each command to the node that owns its key).
type goredisQueue struct {
	pipe    redis.Pipeliner
	unlinks []*redis.IntCmd
	keys    int // keys in the queued UNLINKs
	n       int64
	// args holds the queued commands' arguments; it is reset once they are
	// sent, so that a huge batch holds one round trip's arguments at a time
	args arena
}

func (q *goredisQueue) start(pipe redis.Pipeliner) {
	q.pipe, q.keys, q.n = pipe, 0, 0
	clear(q.unlinks)
	q.unlinks = q.unlinks[:0]
	q.args.reset() // the previous Apply's pipeline is done with them
}

func (q *goredisQueue) deleted() int64 { return q.n }

func (q *goredisQueue) unlink(ctx context.Context, keys []string) error {
	q.unlinks = append(q.unlinks, q.pipe.Unlink(ctx, keys...))
	q.keys += len(keys)
	return q.maybeExec(ctx)
}

func (q *goredisQueue) incr(ctx context.Context, key string) error {
	q.pipe.Incr(ctx, key)
	return q.maybeExec(ctx)
}

func (q *goredisQueue) publish(ctx context.Context, kind cmdKind, prefix, channel string, payload []byte) error {
	ch := prefix + channel // a string: cluster routing hashes it
	if kind == cmdSPublish {
		q.pipe.SPublish(ctx, ch, q.args.copy(payload))
	} else {
		q.pipe.Publish(ctx, ch, q.args.copy(payload))
	}
	return q.maybeExec(ctx)
}

func (q *goredisQueue) xadd(ctx context.Context, stream string, maxLen int64, e *journalEntry) error {
	// the pipeline holds the values until it is sent, and the next entry
	// reuses the buffer they are in unless it is fresh
	keep := q.args.copy
	if e.fresh {
		keep = func(b []byte) []byte { return b }
	}
	values := []any{
		"lsn", keep(e.lsn),
		"end_lsn", keep(e.endLSN),
		"xid", strconv.FormatUint(uint64(e.xid), 10),
		"commit_time", keep(e.commitTime),
		"keys", keep(e.keys),
		"patterns", keep(e.patterns),
		"channels", keep(e.channels),
		"messages", keep(e.messages),
	}
	if e.server.SystemID != "" {
		values = append(values, "system_id", e.server.SystemID, "database", e.server.Database)
	}
	if e.namespaces != nil {
		values = append(values, "namespaces", keep(e.namespaces))
	}
	q.pipe.XAdd(ctx, &redis.XAddArgs{Stream: stream, MaxLen: maxLen, Approx: true, Values: values})
	return q.maybeExec(ctx)
}

func (q *goredisQueue) maybeExec(ctx context.Context) error {
	if q.pipe.Len() < maxPipeline && q.keys < maxPipelineKeys {
		return nil
	}
	return q.exec(ctx)
}

func (q *goredisQueue) exec(ctx context.Context) error {
	if q.pipe.Len() == 0 {
		return nil
	}
	cmds, err := q.pipe.Exec(ctx)
	q.keys = 0
	q.args.reset() // Exec has written every queued command
	if err != nil {
		return fmt.Errorf("redis pipeline: %w", err)
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return fmt.Errorf("redis %s: %w", cmd.Name(), err)
		}
	}
	for _, u := range q.unlinks {
		q.n += u.Val()
	}
	clear(q.unlinks)
	q.unlinks = q.unlinks[:0]
	return nil
}
