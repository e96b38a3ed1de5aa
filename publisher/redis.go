package publisher

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/glob"
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
}

// DefaultJournalMaxLen is the default approximate length of the journal.
const DefaultJournalMaxLen = 100_000

// JournalKey returns the journal stream's key for a channel prefix.
func JournalKey(channelPrefix string) string { return channelPrefix + "_journal" }

// HeartbeatChannel returns the heartbeat channel for a channel prefix.
func HeartbeatChannel(channelPrefix string) string { return channelPrefix + "_heartbeat" }

// Publisher applies batches of committed transactions to Redis.
type Publisher struct {
	rdb  redis.UniversalClient
	cfg  Config
	buf  []byte // scratch
	buf2 []byte // scratch
	tail []byte // scratch: the message tail of the transaction being published
	args arena  // the arguments of the commands of the Apply in progress
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
	return &Publisher{rdb: rdb, cfg: cfg}
}

// Stats is what one Apply did.
type Stats struct {
	KeysDeleted int64 // keys that existed and were unlinked (exact and by pattern)
	Messages    int
}

// Applied is one committed transaction's invalidations.
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
		match := string(router.AppendGlobEscaped(nil, set.CommonPrefix())) + "*"
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

	// the commands' arguments; the previous Apply's pipeline is done with them
	args := &p.args
	args.reset()
	pl := &pipeline{pipe: p.rdb.Pipeline(), max: maxPipeline, args: args}
	if err := p.queueUnlinks(ctx, pl, batch); err != nil {
		return st, err
	}
	if _, cluster := p.rdb.(*redis.ClusterClient); cluster {
		// A cluster pipeline runs each node's part in parallel, and PUBLISH
		// has no key to tie it to the UNLINK's node: wait for every delete
		// before any message can reach a subscriber.
		if err := pl.exec(ctx); err != nil {
			return st, err
		}
	}
	for _, c := range batch {
		res := c.Txn.Result()
		if res.NumMessages() > 0 {
			p.tail = appendMessageTail(p.tail[:0], c.CommitLSN, c.Xid, c.CommitTime)
		}
		for i := range res.NumMessages() {
			m := res.Message(i)
			channel := p.cfg.ChannelPrefix + m.Channel // a string: cluster routing hashes it
			p.buf = append(appendMessageHead(p.buf[:0], &m), p.tail...)
			payload := args.copy(p.buf)
			if p.cfg.Sharded {
				pl.pipe.SPublish(ctx, channel, payload)
			} else {
				pl.pipe.Publish(ctx, channel, payload)
			}
			st.Messages++
			if err := pl.maybeExec(ctx); err != nil {
				return st, err
			}
		}
		if p.cfg.Journal && !res.Empty() {
			pl.pipe.XAdd(ctx, &redis.XAddArgs{
				Stream: JournalKey(p.cfg.ChannelPrefix),
				MaxLen: p.cfg.JournalMaxLen,
				Approx: true,
				Values: p.journalValues(args, c, p.tail),
			})
		}
	}
	err := pl.exec(ctx)
	st.KeysDeleted += pl.deleted
	return st, err
}

// maxPipeline bounds the commands sent in one round trip, so that a huge
// transaction's pipeline does not hold every command in memory at once.
// Commands still reach a single Redis in order, and on a cluster the
// deletes are acknowledged before any message is sent: every key is
// unlinked before any message of the batch is published.
const maxPipeline = 4096

// maxPipelineKeys bounds the keys the UNLINKs of one round trip carry: a
// huge transaction's keys would otherwise all be queued before its first
// round trip, each boxed as a command argument (32 bytes a key on top of
// the key itself, 6 MB for 200,000 keys).
const maxPipelineKeys = 16384

// pipeline executes queued commands in round trips of at most max commands.
type pipeline struct {
	pipe    redis.Pipeliner
	max     int
	unlinks []*redis.IntCmd
	keys    int // keys in the queued UNLINKs
	deleted int64
	// args holds the queued commands' arguments; it is reset once they are
	// sent, so that a huge batch holds one round trip's arguments at a time
	args *arena
}

func (pl *pipeline) maybeExec(ctx context.Context) error {
	if pl.pipe.Len() < pl.max && pl.keys < maxPipelineKeys {
		return nil
	}
	return pl.exec(ctx)
}

func (pl *pipeline) exec(ctx context.Context) error {
	if pl.pipe.Len() == 0 {
		return nil
	}
	cmds, err := pl.pipe.Exec(ctx)
	pl.keys = 0
	if pl.args != nil {
		pl.args.reset() // Exec has written every queued command
	}
	if err != nil {
		return fmt.Errorf("redis pipeline: %w", err)
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return fmt.Errorf("redis %s: %w", cmd.Name(), err)
		}
	}
	for _, u := range pl.unlinks {
		pl.deleted += u.Val()
	}
	pl.unlinks = pl.unlinks[:0]
	return nil
}

func (pl *pipeline) unlink(ctx context.Context, keys []string) error {
	pl.unlinks = append(pl.unlinks, pl.pipe.Unlink(ctx, keys...))
	pl.keys += len(keys)
	return pl.maybeExec(ctx)
}

// queueUnlinks queues UNLINK commands for the batch's exact keys in chunks.
// A key several transactions of the batch share may repeat in a chunk:
// UNLINK counts it once, and checking for it here would cost more than the
// server's lookup. On a cluster, a chunk holds keys of one hash slot only (a
// multi-key command may not cross slots); the pipeline sends each to the
// node that owns the slot.
func (p *Publisher) queueUnlinks(ctx context.Context, pl *pipeline, batch []Applied) error {
	var err error
	each := func(fn func(string)) {
		for _, c := range batch {
			for _, k := range c.Txn.Result().Keys {
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
				err = pl.unlink(ctx, bySlot[s])
				bySlot[s] = nil
			}
		})
		for _, keys := range bySlot {
			if len(keys) > 0 && err == nil {
				err = pl.unlink(ctx, keys)
			}
		}
		return err
	}
	chunk := make([]string, 0, p.cfg.UnlinkChunk)
	each(func(k string) {
		chunk = append(chunk, k)
		if len(chunk) == p.cfg.UnlinkChunk {
			err = pl.unlink(ctx, chunk)
			chunk = chunk[:0] // UNLINK copied the keys into its arguments
		}
	})
	if len(chunk) > 0 && err == nil {
		err = pl.unlink(ctx, chunk)
	}
	return err
}

// scanTogether is how many patterns a batch needs before they share one
// SCAN: each SCAN MATCH walks the whole keyspace on the server, while a
// shared pass sends the keys under the patterns' common prefix to us.
const scanTogether = 4

// deleteMatching unlinks every key matching pattern (and keep, when set),
// in bounded batches.
func (p *Publisher) deleteMatching(ctx context.Context, pattern string, keep func(string) bool) (int64, error) {
	var deleted atomic.Int64 // ForEachMaster scans the masters concurrently
	scan := func(cluster bool) func(ctx context.Context, c *redis.Client) error {
		return func(ctx context.Context, c *redis.Client) error {
			var cursor uint64
			for {
				keys, next, err := c.Scan(ctx, cursor, pattern, p.cfg.ScanCount).Result()
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
					n, err := unlinkScanned(ctx, c, keys, cluster)
					if err != nil {
						return fmt.Errorf("redis unlink (pattern %q): %w", pattern, err)
					}
					deleted.Add(n)
				}
				if next == 0 {
					return nil
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

// unlinkScanned unlinks keys one SCAN returned from node c. On a cluster
// node the keys span hash slots, and a multi-key command may not: one
// UNLINK per slot, pipelined on that node.
func unlinkScanned(ctx context.Context, c *redis.Client, keys []string, cluster bool) (int64, error) {
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

// journalValues is the journal entry of one transaction: positions, what
// was deleted, and the messages as published (so that replay can re-send
// them verbatim); tail is the transaction's message tail. Short values are
// carved from args.
func (p *Publisher) journalValues(args *arena, c Applied, tail []byte) []any {
	res := c.Txn.Result()
	p.buf = appendLSN(p.buf[:0], c.CommitLSN)
	lsn := args.copy(p.buf)
	p.buf = appendLSN(p.buf[:0], c.EndLSN)
	endLSN := args.copy(p.buf)
	p.buf = c.CommitTime.UTC().AppendFormat(p.buf[:0], TimeLayout)
	commitTime := args.copy(p.buf)
	// The messages as published, so that replay re-sends them verbatim;
	// left out of huge transactions (replay then re-applies the deletes and
	// sends one message per channel rebuilt from the channel list).
	p.buf = append(p.buf[:0], '[')
	if res.NumMessages() <= journalMaxMessages {
		for i := range res.NumMessages() {
			if i > 0 {
				p.buf = append(p.buf, ',')
			}
			m := res.Message(i)
			p.buf = append(appendMessageHead(p.buf, &m), tail...)
		}
	}
	p.buf = append(p.buf, ']')
	return []any{
		"lsn", lsn,
		"end_lsn", endLSN,
		"xid", c.Xid,
		"commit_time", commitTime,
		"keys", p.jsonArray(args, len(res.Keys), func(i int) string { return res.Keys[i] }),
		"patterns", p.jsonArray(args, len(res.Patterns), func(i int) string { return res.Patterns[i] }),
		"channels", p.jsonArray(args, res.NumMessages(), res.Channel),
		"messages", args.copy(p.buf),
	}
}

// jsonArray is the JSON array of the n strings at(0)…at(n-1): carved from
// args when short, else (a huge transaction's) in an allocation of its own
// size, not left behind in a scratch buffer.
func (p *Publisher) jsonArray(args *arena, n int, at func(int) string) []byte {
	size := 2
	for i := range n {
		size += len(at(i)) + 3
	}
	dst := p.buf2[:0]
	if size > arenaBlock/4 {
		dst = make([]byte, 0, size)
	}
	dst = appendJSONArray(dst, n, at)
	if size > arenaBlock/4 {
		return dst
	}
	p.buf2 = dst
	return args.copy(dst)
}

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
