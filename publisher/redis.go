package publisher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/glob"
	"github.com/cachewire/invalidator/internal/resp"
	"github.com/cachewire/invalidator/router"
)

// Config shapes what the Publisher writes.
type Config struct {
	ChannelPrefix string
	// Journal enables the journal stream, trimmed to about JournalMaxLen entries.
	Journal       bool
	JournalMaxLen int64
	// ScanCount is the COUNT hint of SCAN for pattern deletes (default 1000).
	ScanCount int64
	// UnlinkChunk bounds the keys of one UNLINK command (default 512).
	UnlinkChunk int
	// Sharded publishes with SPUBLISH (Redis 7 sharded pub/sub) instead of PUBLISH.
	Sharded bool
	// Server is written into every journal entry (system_id, database), so
	// that replay takes only its own server's entries from a shared Redis.
	Server cdc.Server
	// Sentinel, when set, is how the Publisher's own connection finds the
	// master of a single Redis behind Redis Sentinel: asked on every
	// connect, and the connection is dropped (and the master asked again)
	// after any failure. rdb must then be go-redis's failover client.
	Sentinel *resp.Sentinel
	// MinReplicas, when above 0, makes Apply wait (WAIT) after its writes
	// until that many replicas of each master written to acknowledged them,
	// up to WaitTimeout (default 1s); fewer is an error, so that the batch
	// is retried and not confirmed (ADR 22).
	MinReplicas int
	WaitTimeout time.Duration
}

// DefaultJournalMaxLen is the default approximate length of the journal.
const DefaultJournalMaxLen = 100_000

// JournalKey returns the journal stream's key for a channel prefix.
func JournalKey(channelPrefix string) string { return channelPrefix + "_journal" }

// HeartbeatChannel returns the heartbeat channel for a channel prefix.
func HeartbeatChannel(channelPrefix string) string { return channelPrefix + "_heartbeat" }

// Publisher applies batches of committed transactions to Redis.
type Publisher struct {
	rdb    redis.UniversalClient
	cfg    Config
	buf    []byte       // scratch: a message
	tail   []byte       // scratch: the message tail of the transaction being published
	jbuf   []byte       // scratch: a journal entry's values
	jentry journalEntry // the last journal entry encoded (in jbuf)

	// A single Redis is written to by the publisher itself (package resp)
	// on a connection of its own; a Redis Cluster through go-redis.
	direct *resp.Options
	conn   *resp.Conn  // nil until dialled, and after an error
	wire   directQueue // the commands of the Apply in progress, on conn
	pipe   goredisQueue
}

// New returns a Publisher writing through rdb.
func New(rdb redis.UniversalClient, cfg Config) *Publisher {
	if cfg.ScanCount <= 0 {
		cfg.ScanCount = 1000
	}
	if cfg.UnlinkChunk <= 0 {
		cfg.UnlinkChunk = 512
	}
	if cfg.JournalMaxLen <= 0 {
		cfg.JournalMaxLen = DefaultJournalMaxLen
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	p := &Publisher{rdb: rdb, cfg: cfg}
	if c, ok := rdb.(*redis.Client); ok {
		p.direct = directOptions(c.Options(), cfg.Sentinel)
	}
	return p
}

// DefaultWaitTimeout is how long a WAIT for replicas waits by default.
const DefaultWaitTimeout = time.Second

// ReplicasError is a WAIT after a batch's writes that fewer replicas than
// required acknowledged in time: the writes are on the master only, and
// a failover now could lose them.
type ReplicasError struct {
	Addr        string // the master
	Acked, Want int64
	Timeout     time.Duration
}

func (e *ReplicasError) Error() string {
	return fmt.Sprintf("redis at %s: %d of %d replicas acknowledged the writes within %s", e.Addr, e.Acked, e.Want, e.Timeout)
}

// Connect opens the Publisher's own connection now, when it writes to a
// single Redis itself, so that a refused AUTH or SELECT shows before the
// first batch rather than as retries of it.
func (p *Publisher) Connect(ctx context.Context) error {
	if p.direct == nil || p.conn != nil {
		return nil
	}
	c, err := resp.Dial(ctx, *p.direct)
	if err != nil {
		return err
	}
	p.conn = c
	return nil
}

// Close closes the Publisher's own connection, if any; rdb is the caller's.
func (p *Publisher) Close() error {
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn = nil
	return err
}

// Stats is what one Apply did.
type Stats struct {
	KeysDeleted int64 // keys that existed and were unlinked (exact and by pattern)
	Messages    int
}

// Applied is one committed transaction's invalidations, or the keys of
// one still arriving (Early: deleted, with no message or journal entry).
type Applied = cdc.Committed[*router.Txn]

// Apply deletes the batch's keys and pattern matches, then publishes its
// messages and appends it to the journal. It returns nil only when Redis
// acknowledged every command; it is idempotent, so a failed batch is simply
// applied again.
func (p *Publisher) Apply(ctx context.Context, batch []Applied) (Stats, error) {
	st, err := p.apply(ctx, batch)
	if c, cluster := p.rdb.(*redis.ClusterClient); err != nil && cluster {
		// A refused connection (a master died) does not make go-redis
		// reload its slot map as MOVED does: ask for it, so that the retry
		// reaches the promoted replica instead of the dead node.
		c.ReloadState(ctx)
	}
	return st, err
}

func (p *Publisher) apply(ctx context.Context, batch []Applied) (Stats, error) {
	var st Stats
	// Patterns first: SCAN + UNLINK until the keyspace is exhausted.
	var patterns []string
	var seenPat map[string]bool
	for _, c := range batch {
		for _, pat := range c.Txn.Result().Patterns {
			if seenPat == nil {
				seenPat = map[string]bool{}
			}
			if !seenPat[pat] {
				seenPat[pat] = true
				patterns = append(patterns, pat)
			}
		}
	}
	if len(patterns) >= scanTogether {
		// one pass over the keyspace for all of them, not one per pattern
		set := glob.NewSet(patterns)
		match := glob.Escape(set.CommonPrefix()) + "*"
		n, err := p.deleteMatching(ctx, match, set.Match)
		st.KeysDeleted += n
		if err != nil {
			return st, err
		}
	} else {
		for _, pat := range patterns {
			n, err := p.deleteMatching(ctx, pat, nil)
			st.KeysDeleted += n
			if err != nil {
				return st, err
			}
		}
	}

	for attempt := 1; ; attempt++ {
		reused := p.conn != nil
		q, err := p.queue(ctx)
		if err != nil {
			return st, err
		}
		err = p.queueCommands(ctx, q, batch, &st)
		st.KeysDeleted += q.deleted()
		if err == nil {
			err = p.waitReplicas(ctx, q)
		}
		q.release()
		if err == nil || p.direct == nil {
			return st, err
		}
		// Any failure drops the connection: an I/O error may leave it out
		// of step, and an error reply may be for the server behind it
		// (READONLY: a master demoted behind the same address), which a
		// new connection may not reach.
		p.closeConn()
		// A connection that sat idle may have been closed by the server
		// or a proxy meanwhile: one immediate retry on a new one (the
		// batch is idempotent), as a connection pool would.
		// A master short of replicas drops its connection too: the next
		// connect asks the sentinels again, in case it is a master cut off
		// from the others, which they have replaced.
		var short *ReplicasError
		if !reused || attempt > 1 || isReplyError(err) || errors.As(err, &short) || ctx.Err() != nil {
			return st, err
		}
	}
}

// queueCommands queues and sends the batch's UNLINKs, then its messages
// and journal entries.
func (p *Publisher) queueCommands(ctx context.Context, q commands, batch []Applied, st *Stats) error {
	if err := p.queueUnlinks(ctx, q, batch); err != nil {
		return err
	}
	if err := p.queueIncrs(ctx, q, batch); err != nil {
		return err
	}
	if _, cluster := p.rdb.(*redis.ClusterClient); cluster {
		// A cluster pipeline runs each node's part in parallel, and PUBLISH
		// has no key to tie it to the UNLINK's node: wait for every delete
		// before any message can reach a subscriber.
		if err := q.exec(ctx); err != nil {
			return err
		}
	}
	publish := cmdPublish
	if p.cfg.Sharded {
		publish = cmdSPublish
	}
	journal := JournalKey(p.cfg.ChannelPrefix)
	for _, c := range batch {
		res := c.Txn.Result()
		if res.NumMessages() > 0 {
			p.tail = appendMessageTail(p.tail[:0], c.CommitLSN, c.Xid, c.CommitTime)
		}
		for i := range res.NumMessages() {
			m := res.Message(i)
			p.buf = append(appendMessageHead(p.buf[:0], &m), p.tail...)
			if err := q.publish(ctx, publish, p.cfg.ChannelPrefix, m.Channel, p.buf); err != nil {
				return err
			}
			st.Messages++
		}
		if p.cfg.Journal && !c.Early && !res.Empty() {
			if err := q.xadd(ctx, journal, p.cfg.JournalMaxLen, p.journalEntry(c, p.tail)); err != nil {
				return err
			}
		}
	}
	return q.exec(ctx)
}

// queueUnlinks queues UNLINK commands for the batch's exact keys in chunks.
// A key several transactions of the batch share may repeat in a chunk:
// UNLINK counts it once, and checking for it here would cost more than the
// server's lookup. On a cluster, a chunk holds keys of one hash slot only (a
// multi-key command may not cross slots); the pipeline sends each to the
// node that owns the slot.
func (p *Publisher) queueUnlinks(ctx context.Context, q commands, batch []Applied) error {
	var err error
	each := func(fn func(string)) {
		for _, c := range batch {
			for _, k := range c.Txn.Result().ToUnlink() {
				if err != nil {
					return
				}
				fn(k)
			}
		}
	}
	if _, cluster := p.rdb.(*redis.ClusterClient); cluster {
		bySlot := map[int][]string{}
		each(func(k string) {
			s := HashSlot(k)
			bySlot[s] = append(bySlot[s], k)
			if len(bySlot[s]) == p.cfg.UnlinkChunk {
				err = q.unlink(ctx, bySlot[s])
				bySlot[s] = nil
			}
		})
		for _, keys := range bySlot {
			if len(keys) > 0 && err == nil {
				err = q.unlink(ctx, keys)
			}
		}
		return err
	}
	chunk := make([]string, 0, p.cfg.UnlinkChunk)
	each(func(k string) {
		chunk = append(chunk, k)
		if len(chunk) == p.cfg.UnlinkChunk {
			err = q.unlink(ctx, chunk)
			chunk = chunk[:0] // the queue copied the keys
		}
	})
	if len(chunk) > 0 && err == nil {
		err = q.unlink(ctx, chunk)
	}
	return err
}

// queueIncrs queues one INCR per namespace each transaction of the batch
// bumps. INCR is not idempotent, but a batch applied again only bumps a
// version once more: one more miss per key, never a stale read. Versions
// bumped by several transactions of the batch are bumped once: one bump
// voids every value stored under the version before it.
func (p *Publisher) queueIncrs(ctx context.Context, q commands, batch []Applied) error {
	var seen map[string]bool
	for _, c := range batch {
		for _, ns := range c.Txn.Result().Namespaces {
			if seen[ns] {
				continue
			}
			if seen == nil {
				seen = map[string]bool{}
			}
			seen[ns] = true
			if err := q.incr(ctx, ns); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanTogether is how many patterns a batch needs before they share one
// SCAN: each SCAN MATCH walks the whole keyspace on the server, while a
// shared pass sends the keys under the patterns' common prefix to us.
const scanTogether = 4

// deleteMatching unlinks every key matching pattern (and keep, when set),
// in bounded batches; with MinReplicas, each master's deletes are then
// waited for on the connection that made them.
func (p *Publisher) deleteMatching(ctx context.Context, pattern string, keep func(string) bool) (int64, error) {
	var deleted atomic.Int64 // ForEachMaster scans the masters concurrently
	scan := func(cluster bool) func(ctx context.Context, c *redis.Client) error {
		return func(ctx context.Context, c *redis.Client) error {
			cn := c.Conn() // one connection: WAIT covers the writes made on it
			defer func() { _ = cn.Close() }()
			var cursor uint64
			for {
				keys, next, err := cn.Scan(ctx, cursor, pattern, p.cfg.ScanCount).Result()
				if err != nil {
					return fmt.Errorf("redis scan %q: %w", pattern, err)
				}
				if keep != nil {
					kept := keys[:0]
					for _, k := range keys {
						if keep(k) {
							kept = append(kept, k)
						}
					}
					keys = kept
				}
				if len(keys) > 0 {
					n, err := unlinkScanned(ctx, cn, keys, cluster)
					if err != nil {
						return fmt.Errorf("redis unlink (pattern %q): %w", pattern, err)
					}
					deleted.Add(n)
				}
				if next == 0 {
					return p.waitConn(ctx, cn, c.Options().Addr)
				}
				cursor = next
			}
		}
	}
	switch c := p.rdb.(type) {
	case *redis.Client:
		err := scan(false)(ctx, c)
		return deleted.Load(), err
	case *redis.ClusterClient:
		err := c.ForEachMaster(ctx, scan(true))
		return deleted.Load(), err
	default:
		return 0, fmt.Errorf("pattern delete: unsupported redis client %T", p.rdb)
	}
}

// waitConn waits for MinReplicas replicas to acknowledge the writes made
// on cn, a connection to the master at addr (for the error message).
func (p *Publisher) waitConn(ctx context.Context, cn *redis.Conn, addr string) error {
	if p.cfg.MinReplicas <= 0 {
		return nil
	}
	n, err := cn.Wait(ctx, p.cfg.MinReplicas, p.cfg.WaitTimeout).Result()
	if err != nil {
		return fmt.Errorf("redis WAIT at %s: %w", addr, err)
	}
	return p.enough(addr, n)
}

// enough is nil when n replicas are enough, a *ReplicasError if not.
func (p *Publisher) enough(addr string, n int64) error {
	if n >= int64(p.cfg.MinReplicas) {
		return nil
	}
	return &ReplicasError{Addr: addr, Acked: n, Want: int64(p.cfg.MinReplicas), Timeout: p.cfg.WaitTimeout}
}

// waitReplicas waits, when MinReplicas is set, for the replicas of every
// master the batch's commands were written to.
func (p *Publisher) waitReplicas(ctx context.Context, q commands) error {
	if p.cfg.MinReplicas <= 0 {
		return nil
	}
	return q.wait(ctx, p)
}

// unlinkScanned unlinks keys one SCAN returned from node c. On a cluster
// node the keys span hash slots, and a multi-key command may not: one
// UNLINK per slot, pipelined on that node.
func unlinkScanned(ctx context.Context, c *redis.Conn, keys []string, cluster bool) (int64, error) {
	if !cluster {
		return c.Unlink(ctx, keys...).Result()
	}
	bySlot := map[int][]string{}
	for _, k := range keys {
		s := HashSlot(k)
		bySlot[s] = append(bySlot[s], k)
	}
	pipe := c.Pipeline()
	cmds := make([]*redis.IntCmd, 0, len(bySlot))
	for _, ks := range bySlot {
		cmds = append(cmds, pipe.Unlink(ctx, ks...))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, err
	}
	var n int64
	for _, cmd := range cmds {
		n += cmd.Val()
	}
	return n, nil
}

// journalMaxMessages bounds the messages a journal entry repeats verbatim.
const journalMaxMessages = 1000

// journalEntry is the journal entry of one transaction, its values
// encoded: positions, what was deleted, and the messages as published (so
// that replay can re-send them verbatim).
type journalEntry struct {
	lsn, endLSN, commitTime            []byte
	xid                                uint32
	server                             cdc.Server // empty fields are left out
	keys, patterns, channels, messages []byte     // JSON arrays
	namespaces                         []byte     // JSON array; nil: left out
	// fresh: the values are in a buffer of their own that the Publisher
	// does not write again (a huge transaction's), so they need no copy
	fresh bool
}

// journalEntry encodes the journal entry of one transaction; tail is the
// transaction's message tail. The entry's values are valid until the next
// call, and after it too when the entry is fresh.
func (p *Publisher) journalEntry(c Applied, tail []byte) *journalEntry {
	res := c.Txn.Result()
	// A huge transaction's key and channel lists are megabytes: sized
	// once rather than grown by doubling, and not kept afterwards.
	key := func(i int) string { return res.Keys[i] }
	// the patterns that cover keys deleted past the bound and not listed
	// (ADR 27) are in the entry too, so that replay covers those keys
	patterns := res.Patterns
	if len(res.Covered) > 0 {
		patterns = append(slices.Clip(patterns), res.Covered...)
	}
	pattern := func(i int) string { return patterns[i] }
	namespace := func(i int) string { return res.Namespaces[i] }
	need := 2*32 + len(TimeLayout) + jsonArraySize(len(res.Keys), key) +
		jsonArraySize(len(patterns), pattern) + jsonArraySize(res.NumMessages(), res.Channel) + 2 +
		jsonArraySize(len(res.Namespaces), namespace)
	if res.NumMessages() <= journalMaxMessages {
		need += res.NumMessages() * (len(tail) + 128)
	}
	b := p.jbuf[:0]
	fresh := need > maxScratch
	if fresh || cap(b) < need {
		b = make([]byte, 0, need)
	}
	var end [7]int // where each value but the last ends in b
	b = appendLSN(b, c.CommitLSN)
	end[0] = len(b)
	b = appendLSN(b, c.EndLSN)
	end[1] = len(b)
	b = AppendTime(b, c.CommitTime)
	end[2] = len(b)
	b = appendJSONArray(b, len(res.Keys), key)
	end[3] = len(b)
	b = appendJSONArray(b, len(patterns), pattern)
	end[4] = len(b)
	b = appendJSONArray(b, res.NumMessages(), res.Channel)
	end[5] = len(b)
	// The messages as published, so that replay re-sends them verbatim;
	// left out of huge transactions (replay then re-applies the deletes and
	// sends one message per channel rebuilt from the channel list).
	b = append(b, '[')
	if res.NumMessages() <= journalMaxMessages {
		for i := range res.NumMessages() {
			if i > 0 {
				b = append(b, ',')
			}
			m := res.Message(i)
			b = append(appendMessageHead(b, &m), tail...)
		}
	}
	b = append(b, ']')
	end[6] = len(b)
	if len(res.Namespaces) > 0 {
		b = appendJSONArray(b, len(res.Namespaces), namespace)
	}
	e := &p.jentry
	*e = journalEntry{
		lsn: b[:end[0]], endLSN: b[end[0]:end[1]], commitTime: b[end[1]:end[2]], xid: c.Xid, server: p.cfg.Server,
		keys: b[end[2]:end[3]], patterns: b[end[3]:end[4]], channels: b[end[4]:end[5]], messages: b[end[5]:end[6]],
		fresh: fresh || cap(b) > maxScratch,
	}
	if len(res.Namespaces) > 0 {
		e.namespaces = b[end[6]:]
	}
	if e.fresh {
		p.jbuf = nil // a huge transaction's entry: not kept for the next one
	} else {
		p.jbuf = b
	}
	return e
}

// jsonArraySize is the size of the JSON array of the n strings at(0)…
// at(n-1) when none needs escaping (escapes make it grow once).
func jsonArraySize(n int, at func(int) string) int {
	size := 2
	for i := range n {
		size += len(at(i)) + 3
	}
	return size
}

// maxScratch bounds the scratch buffers a Publisher keeps between uses.
const maxScratch = 1 << 20

// Heartbeat publishes the heartbeat message.
func (p *Publisher) Heartbeat(ctx context.Context, payload []byte) error {
	publish := p.rdb.Publish
	if p.cfg.Sharded {
		publish = p.rdb.SPublish
	}
	if err := publish(ctx, HeartbeatChannel(p.cfg.ChannelPrefix), payload).Err(); err != nil {
		return fmt.Errorf("publish heartbeat: %w", err)
	}
	return nil
}
