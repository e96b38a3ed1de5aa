package publisher

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/cdc"
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
	rdb redis.UniversalClient
	cfg Config
	buf []byte
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
	var st Stats
	// Patterns first: SCAN + UNLINK until each is exhausted.
	seenPat := map[string]bool{}
	for _, c := range batch {
		for _, pat := range c.Txn.Result().Patterns {
			if seenPat[pat] {
				continue
			}
			seenPat[pat] = true
			n, err := p.deleteMatching(ctx, pat)
			st.KeysDeleted += n
			if err != nil {
				return st, err
			}
		}
	}

	pipe := p.rdb.Pipeline()
	unlinks := p.queueUnlinks(ctx, pipe, batch)
	for _, c := range batch {
		res := c.Txn.Result()
		for i := range res.Messages {
			m := &res.Messages[i]
			p.buf = AppendMessage(p.buf[:0], m, c.CommitLSN, c.Xid, c.CommitTime)
			if p.cfg.Sharded {
				pipe.SPublish(ctx, p.cfg.ChannelPrefix+m.Channel, string(p.buf))
			} else {
				pipe.Publish(ctx, p.cfg.ChannelPrefix+m.Channel, string(p.buf))
			}
			st.Messages++
		}
		if p.cfg.Journal && !res.Empty() {
			pipe.XAdd(ctx, &redis.XAddArgs{
				Stream: JournalKey(p.cfg.ChannelPrefix),
				MaxLen: p.cfg.JournalMaxLen,
				Approx: true,
				Values: p.journalValues(c),
			})
		}
	}
	if pipe.Len() == 0 {
		return st, nil
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		return st, fmt.Errorf("redis pipeline: %w", err)
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil {
			return st, fmt.Errorf("redis %s: %w", cmd.Name(), err)
		}
	}
	for _, u := range unlinks {
		st.KeysDeleted += u.Val()
	}
	return st, nil
}

// queueUnlinks queues UNLINK commands for the batch's exact keys, de-duplicated
// across its transactions, in chunks. On a cluster, a chunk holds keys of one
// hash slot only (a multi-key command may not cross slots); the pipeline
// sends each to the node that owns the slot.
func (p *Publisher) queueUnlinks(ctx context.Context, pipe redis.Pipeliner, batch []Applied) []*redis.IntCmd {
	var unlinks []*redis.IntCmd
	var seen map[string]struct{}
	if len(batch) > 1 {
		seen = map[string]struct{}{}
	}
	each := func(fn func(string)) {
		for _, c := range batch {
			for _, k := range c.Txn.Result().Keys {
				if seen != nil {
					if _, dup := seen[k]; dup {
						continue
					}
					seen[k] = struct{}{}
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
				unlinks = append(unlinks, pipe.Unlink(ctx, bySlot[s]...))
				bySlot[s] = nil
			}
		})
		for _, keys := range bySlot {
			if len(keys) > 0 {
				unlinks = append(unlinks, pipe.Unlink(ctx, keys...))
			}
		}
		return unlinks
	}
	chunk := make([]string, 0, p.cfg.UnlinkChunk)
	each(func(k string) {
		chunk = append(chunk, k)
		if len(chunk) == p.cfg.UnlinkChunk {
			unlinks = append(unlinks, pipe.Unlink(ctx, chunk...))
			chunk = make([]string, 0, p.cfg.UnlinkChunk)
		}
	})
	if len(chunk) > 0 {
		unlinks = append(unlinks, pipe.Unlink(ctx, chunk...))
	}
	return unlinks
}

// deleteMatching unlinks every key matching pattern, in bounded batches.
func (p *Publisher) deleteMatching(ctx context.Context, pattern string) (int64, error) {
	var deleted int64
	scan := func(ctx context.Context, c *redis.Client) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, p.cfg.ScanCount).Result()
			if err != nil {
				return fmt.Errorf("redis scan %q: %w", pattern, err)
			}
			if len(keys) > 0 {
				n, err := c.Unlink(ctx, keys...).Result()
				if err != nil {
					return fmt.Errorf("redis unlink (pattern %q): %w", pattern, err)
				}
				deleted += n
			}
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	switch c := p.rdb.(type) {
	case *redis.Client:
		return deleted, scan(ctx, c)
	case *redis.ClusterClient:
		err := c.ForEachMaster(ctx, scan)
		return deleted, err
	default:
		return 0, fmt.Errorf("pattern delete: unsupported redis client %T", p.rdb)
	}
}

// journalValues is the journal entry of one transaction: positions, what
// was deleted, and the messages as published (so that replay can re-send
// them verbatim).
func (p *Publisher) journalValues(c Applied) []any {
	res := c.Txn.Result()
	channels := make([]string, len(res.Messages))
	msgs := []byte{'['}
	for i := range res.Messages {
		m := &res.Messages[i]
		channels[i] = m.Channel
		if i > 0 {
			msgs = append(msgs, ',')
		}
		msgs = AppendMessage(msgs, m, c.CommitLSN, c.Xid, c.CommitTime)
	}
	msgs = append(msgs, ']')
	return []any{
		"lsn", string(appendLSN(nil, c.CommitLSN)),
		"end_lsn", string(appendLSN(nil, c.EndLSN)),
		"xid", c.Xid,
		"commit_time", c.CommitTime.UTC().Format(TimeLayout),
		"keys", string(appendJSONStrings(nil, res.Keys)),
		"patterns", string(appendJSONStrings(nil, res.Patterns)),
		"channels", string(appendJSONStrings(nil, channels)),
		"messages", string(msgs),
	}
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
