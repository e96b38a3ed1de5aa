package publisher

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/resp"
	"github.com/cachewire/invalidator/internal/sockio"
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
	// wait waits for p.cfg.MinReplicas replicas of each master written
	// to, after exec.
	wait(ctx context.Context, p *Publisher) error
	// release gives back what the Apply held (connections), once it is done.
	release()
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
		if c, ok := p.rdb.(*redis.ClusterClient); ok && p.cfg.MinReplicas > 0 {
			p.pipe.cluster = c
		}
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

// directOptions are how the Publisher reaches the Redis that c reaches;
// behind Sentinel, the master the sentinels name when it connects.
func directOptions(o *redis.Options, s *resp.Sentinel) *resp.Options {
	d := &resp.Options{
		Network: o.Network, Addr: o.Addr, Dial: sockio.WrapDial(o.Dialer),
		Username: o.Username, Password: o.Password, DB: o.DB, ClientName: o.ClientName,
		ReadTimeout: max(o.ReadTimeout, 0), WriteTimeout: max(o.WriteTimeout, 0),
	}
	switch {
	case s != nil:
		// a failover client's own dialer ignores the address it is given
		// (it asks the sentinels itself): dial what resp resolved
		d.Sentinel, d.Network, d.Dial = s, "tcp", sockio.Dialer(o.DialTimeout, o.TLSConfig)
	case o.TLSConfig != nil:
		// go-redis's dialer puts TLS on the socket itself: dial the
		// socket here, so that the raw reads and writes go under TLS
		d.Dial = sockio.Dialer(o.DialTimeout, o.TLSConfig)
	}
	return d
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

func (q *directQueue) release() {}

func (q *directQueue) wait(ctx context.Context, p *Publisher) error {
	n, err := q.conn.Wait(ctx, p.cfg.MinReplicas, p.cfg.WaitTimeout)
	if err != nil {
		return err
	}
	return p.enough(q.conn.Addr(), n)
}

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

	// cluster, set when replicas must acknowledge (MinReplicas), sends the
	// UNLINKs on one connection per master (masters, by address) instead
	// of the pipeline, so that a WAIT on that connection covers them.
	cluster *redis.ClusterClient
	masters map[string]*masterConn
}

// masterConn is the connection of an Apply to one cluster master.
type masterConn struct {
	addr    string
	cn      *redis.Conn
	pipe    redis.Pipeliner
	unlinks []*redis.IntCmd
}

func (q *goredisQueue) start(pipe redis.Pipeliner) {
	q.release()
	q.cluster = nil
	q.pipe, q.keys, q.n = pipe, 0, 0
	clear(q.unlinks)
	q.unlinks = q.unlinks[:0]
	q.args.reset() // the previous Apply's pipeline is done with them
}

func (q *goredisQueue) deleted() int64 { return q.n }

func (q *goredisQueue) unlink(ctx context.Context, keys []string) error {
	q.keys += len(keys)
	if q.cluster == nil {
		q.unlinks = append(q.unlinks, q.pipe.Unlink(ctx, keys...))
		return q.maybeExec(ctx)
	}
	m, err := q.master(ctx, keys[0]) // the keys share a slot
	if err != nil {
		return err
	}
	m.unlinks = append(m.unlinks, m.pipe.Unlink(ctx, keys...))
	return q.maybeExec(ctx)
}

// master is the connection of this Apply to the master of key.
func (q *goredisQueue) master(ctx context.Context, key string) (*masterConn, error) {
	node, err := q.cluster.MasterForKey(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("redis cluster: the master of %q: %w", key, err)
	}
	addr := node.Options().Addr
	m := q.masters[addr]
	if m == nil {
		if q.masters == nil {
			q.masters = map[string]*masterConn{}
		}
		cn := node.Conn()
		m = &masterConn{addr: addr, cn: cn, pipe: cn.Pipeline()}
		q.masters[addr] = m
	}
	return m, nil
}

// wait waits on each master's connection for its replicas.
func (q *goredisQueue) wait(ctx context.Context, p *Publisher) error {
	if q.cluster == nil {
		return fmt.Errorf("redis cluster: %d replicas required but the batch was not sent per master", p.cfg.MinReplicas)
	}
	for _, m := range q.masters {
		if err := p.waitConn(ctx, m.cn, m.addr); err != nil {
			return err
		}
	}
	return nil
}

// release closes the connections to the masters.
func (q *goredisQueue) release() {
	for addr, m := range q.masters {
		_ = m.cn.Close()
		delete(q.masters, addr)
	}
}

// incr bumps a namespace version; when replicas must acknowledge, on its
// master's connection, so that the WAIT covers it as it covers UNLINKs (a
// bump lost in a failover would make old values current again).
func (q *goredisQueue) incr(ctx context.Context, key string) error {
	if q.cluster == nil {
		q.pipe.Incr(ctx, key)
		return q.maybeExec(ctx)
	}
	m, err := q.master(ctx, key)
	if err != nil {
		return err
	}
	m.pipe.Incr(ctx, key)
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
	// the deletes sent per master first, in case the pipeline holds the
	// messages that must follow them
	for _, m := range q.masters {
		if m.pipe.Len() == 0 {
			continue
		}
		cmds, err := m.pipe.Exec(ctx)
		if err == nil {
			for _, cmd := range cmds {
				if err = cmd.Err(); err != nil {
					break
				}
			}
		}
		if err != nil {
			q.keys = 0
			return fmt.Errorf("redis UNLINK at %s: %w", m.addr, err)
		}
		q.n += takeUnlinks(&m.unlinks)
	}
	if q.pipe.Len() == 0 {
		q.keys = 0
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
	q.n += takeUnlinks(&q.unlinks)
	return nil
}

// takeUnlinks adds up the keys the executed UNLINKs deleted and forgets
// them.
func takeUnlinks(unlinks *[]*redis.IntCmd) int64 {
	var n int64
	for _, u := range *unlinks {
		n += u.Val()
	}
	clear(*unlinks)
	*unlinks = (*unlinks)[:0]
	return n
}
