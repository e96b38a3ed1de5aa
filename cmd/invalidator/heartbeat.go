package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/ops"
	"github.com/cachewire/invalidator/publisher"
)

// probePrefix is the logical decoding message prefix of heartbeat probes.
const probePrefix = "invalidator"

// slotMarkerKey names the Redis key that records that the daemon has streamed
// from a slot of a server's database, so that a missing slot can be told
// from a first start; deployments on other servers sharing the Redis have
// markers of their own (ADR 0023).
func slotMarkerKey(channelPrefix string, srv cdc.Server, slot string) string {
	return channelPrefix + "_slot:" + srv.SystemID + ":" + srv.Database + ":" + slot
}

// legacySlotMarkerKey is the marker older versions wrote, naming the slot
// only: it still counts, and is replaced by slotMarkerKey once streaming.
func legacySlotMarkerKey(channelPrefix, slot string) string { return channelPrefix + "_slot:" + slot }

// streamState is what the heartbeat needs to know of the stream.
type streamState interface {
	Role() cdc.Role
	Applied() cdc.LSN
}

// heartbeat runs while the daemon runs. As the active consumer it marks the
// slot as used in Redis (once), and every interval writes a probe into the
// WAL with pg_logical_emit_message (so that even a quiet database moves the
// slot, and the probe's round trip measures lag) and publishes the heartbeat
// message so subscribers can tell a quiet system from a dead one.
type heartbeat struct {
	interval  time.Duration
	pgURL     string
	slot      string
	markerKey string
	legacyKey string // removed once markerKey is written
	stream    streamState
	pub       *publisher.Publisher
	nats      *publisher.NATSSink // nil without NATS
	rdb       redis.UniversalClient
	metrics   *ops.Metrics
	log       *zap.Logger

	conn   *pgconn.PgConn
	marked bool
	buf    []byte
}

// Run ticks until ctx ends.
func (h *heartbeat) Run(ctx context.Context) error {
	tick := h.interval
	if tick <= 0 {
		tick = time.Second // only to mark the slot
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	defer h.closeConn(ctx)
	failed := failures{metrics: h.metrics, log: h.log, kind: "heartbeat", msg: "heartbeat failed"}
	for nextActiveTick(ctx, t, h.stream) {
		if err := h.beat(ctx); err != nil && ctx.Err() == nil {
			failed.add(err)
		}
		if h.interval <= 0 && h.marked {
			return nil
		}
	}
	return nil
}

// nextActiveTick waits for the next tick of t at which stream is the
// slot's active consumer; it returns false once ctx ends.
func nextActiveTick(ctx context.Context, t *time.Ticker, stream streamState) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if stream.Role() == cdc.RoleActive {
			return true
		}
	}
}

// failures counts the failures of a periodic task (metric kind) and logs
// them as msg, one a minute at the most.
type failures struct {
	metrics   *ops.Metrics
	log       *zap.Logger
	kind, msg string
	last      time.Time
}

func (f *failures) add(err error) {
	f.metrics.Error(f.kind)
	if time.Since(f.last) > time.Minute {
		f.log.Warn(f.msg, zap.Error(err))
		f.last = time.Now()
	}
}

func (h *heartbeat) beat(ctx context.Context) error {
	// on every beat, not once: a flush (FLUSHALL, a wide pattern that
	// happens to match it) must not leave a lost slot looking like a new one
	if err := h.rdb.Set(ctx, h.markerKey, h.slot, 0).Err(); err != nil {
		return fmt.Errorf("mark slot in redis: %w", err)
	}
	if !h.marked && h.legacyKey != "" {
		if err := h.rdb.Del(ctx, h.legacyKey).Err(); err != nil {
			return fmt.Errorf("remove the old slot marker from redis: %w", err)
		}
	}
	h.marked = true
	if h.interval <= 0 {
		return nil
	}
	if err := h.probe(ctx); err != nil {
		h.closeConn(ctx)
		return err
	}
	h.buf = publisher.AppendHeartbeat(h.buf[:0], h.stream.Applied(), time.Now())
	if err := h.pub.Heartbeat(ctx, h.buf); err != nil {
		return err
	}
	h.metrics.Heartbeat()
	if h.nats != nil {
		if err := h.nats.Heartbeat(h.buf); err != nil {
			return err
		}
	}
	return nil
}

// probe writes "<slot> <unix nanos>" as a non-transactional logical decoding
// message; the stream sees it come back (see onProbe).
func (h *heartbeat) probe(ctx context.Context) error {
	if h.conn == nil {
		c, err := pgconn.Connect(ctx, h.pgURL)
		if err != nil {
			return fmt.Errorf("heartbeat probe: connect: %w", err)
		}
		h.conn = c
	}
	content := h.slot + " " + strconv.FormatInt(time.Now().UnixNano(), 10)
	_, err := h.conn.Exec(ctx, "SELECT pg_catalog.pg_logical_emit_message(false, "+cdc.QuoteLiteral(probePrefix)+", "+cdc.QuoteLiteral(content)+")").ReadAll()
	if err != nil {
		return fmt.Errorf("heartbeat probe: %w", err)
	}
	return nil
}

func (h *heartbeat) closeConn(ctx context.Context) {
	if h.conn != nil {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = h.conn.Close(closeCtx)
		h.conn = nil
	}
}

// onProbe returns the stream's handler for logical decoding messages: our
// own probes give the WAL round trip.
func onProbe(slot string, m *ops.Metrics) func(bool, cdc.LSN, string, []byte) {
	return func(_ bool, _ cdc.LSN, prefix string, content []byte) {
		if prefix != probePrefix {
			return
		}
		s, ts, ok := strings.Cut(string(content), " ")
		if !ok || s != slot {
			return
		}
		if n, err := strconv.ParseInt(ts, 10, 64); err == nil {
			m.ProbeRoundTrip(time.Since(time.Unix(0, n)))
		}
	}
}
