// Package subscriber is the application side of invalidator: it subscribes
// to the daemon's invalidation channels on Redis pub/sub, hands every
// message to the application so that it can evict its in-process copies, and
// tells the application to drop its whole local cache whenever messages may
// have been missed.
//
// Redis pub/sub is fire-and-forget: a subscriber that is disconnected, or
// whose connection silently stopped delivering, never sees what was
// published meanwhile. Subscriber therefore calls Config.OnResync after
// every (re)established subscription and when the daemon's heartbeats stop;
// an application that drops its cache then can never serve an entry whose
// invalidation it missed.
//
// Cache is a ready-made LRU cache that follows the messages:
//
//	cache := subscriber.NewCache(10_000)
//	sub, err := subscriber.New(subscriber.Config{
//		Client:    rdb,
//		OnMessage: cache.Apply,
//		OnResync:  cache.Resync,
//		Logger:    log.Named("subscriber"),
//	})
//	if err != nil { ... }
//	err = sub.Run(ctx) // blocks until ctx is done
//
// Filling a cache races with invalidation: a value loaded just before a
// change commits can be stored just after the daemon deleted the key.
// Filler (for Redis) and Cache.GetOrLoad (in process) fill with leases that
// an invalidation of the key voids, so that the old value is not stored.
package subscriber

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/glob"
	"github.com/cachewire/invalidator/internal/backoff"
)

// Reasons passed to Config.OnResync.
const (
	// ReasonStart: Run's subscription has just been confirmed for the first
	// time. Anything cached before that moment may have missed
	// invalidations published before the subscription existed.
	ReasonStart = "start"
	// ReasonReconnect: the subscription has been established again after the
	// connection was lost (Redis restarted, the connection was killed or
	// found dead); messages published in between were lost.
	ReasonReconnect = "reconnect"
	// ReasonHeartbeat: no heartbeat arrived for Config.HeartbeatTimeout; the
	// daemon or the path to it is down, or the subscription silently stopped
	// delivering.
	ReasonHeartbeat = "heartbeat"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultHeartbeatTimeout = 30 * time.Second
	DefaultPingInterval     = 10 * time.Second
)

// Config configures a Subscriber. Client, OnMessage and OnResync are
// required.
type Config struct {
	// Client is the Redis (or Redis Cluster) client to subscribe with. The
	// Subscriber uses one dedicated connection of it and does not close the
	// client.
	Client redis.UniversalClient

	// ChannelPrefix is the daemon's channel_prefix; "" means
	// DefaultChannelPrefix. Without Sharded, Run subscribes to the pattern
	// ChannelPrefix+"*" (glob characters in the prefix are escaped), which
	// covers every channel of the daemon including the heartbeat channel.
	// This works on Redis Cluster too, where PUBLISH reaches every node.
	ChannelPrefix string

	// Sharded subscribes with SSUBSCRIBE to ChannelPrefix+c for every c in
	// Channels (plus the heartbeat channel unless heartbeats are off)
	// instead of PSUBSCRIBE. Sharded pub/sub has no pattern form, so
	// Channels must name every channel to follow, wide-form channels such
	// as "shard:t1:*" included (they are literal channel names), and on
	// Redis Cluster all of them must hash to the same slot (use a hash tag
	// in the prefix), because one connection to that slot's node serves
	// them. Sharded receives only what is published with SPUBLISH: run the
	// daemon with INVALIDATOR_REDIS_SHARDED_PUBSUB=true (otherwise it
	// publishes with PUBLISH, which the default pattern mode receives).
	Sharded bool

	// Channels are the channel names, relative to ChannelPrefix as in the
	// rules file's "channel:" field, that Sharded subscribes to. It must be
	// empty unless Sharded is set.
	Channels []string

	// HeartbeatTimeout is how long Run waits for a heartbeat before it calls
	// OnResync(ReasonHeartbeat), once per outage. 0 means
	// DefaultHeartbeatTimeout; a negative value turns the check off (for a
	// daemon run with INVALIDATOR_HEARTBEAT_INTERVAL=0). It must exceed the
	// daemon's heartbeat interval (10s by default) with margin.
	HeartbeatTimeout time.Duration

	// PingInterval is how long the connection may stay silent before Run
	// sends a PING on it; when no reply of any kind arrives within another
	// PingInterval the connection is presumed dead (a half-open TCP
	// connection, after a network cut, reports no error) and replaced, which
	// leads to OnResync(ReasonReconnect). 0 means DefaultPingInterval; a
	// negative value turns pings off.
	PingInterval time.Duration

	// OnMessage receives every invalidation message, in the order Redis
	// delivered them. Heartbeats and malformed messages are not passed on.
	OnMessage func(Message)

	// OnResync is called when the application must drop its whole local
	// cache, with ReasonStart, ReasonReconnect or ReasonHeartbeat. Messages
	// delivered after the call are ordered after it.
	OnResync func(reason string)

	// Logger receives the Subscriber's logs; nil means no logs.
	Logger *zap.Logger
}

// Stats are counters of a Subscriber since New, for metrics.
type Stats struct {
	Messages    uint64 // invalidation messages passed to OnMessage
	Heartbeats  uint64 // heartbeats received
	Malformed   uint64 // messages skipped because they could not be decoded
	Resyncs     uint64 // calls of OnResync
	Disconnects uint64 // times the subscription connection was lost
}

// Subscriber delivers the daemon's invalidation messages to an application.
// Create it with New and start it with Run.
type Subscriber struct {
	cfg          Config
	log          *zap.Logger
	want         int      // subscription confirmations that make a connection fully subscribed
	channels     []string // SSUBSCRIBE channels when Sharded
	pattern      string   // PSUBSCRIBE pattern otherwise
	heartbeatCh  string
	running      atomic.Bool
	messages     atomic.Uint64
	heartbeats   atomic.Uint64
	malformed    atomic.Uint64
	resyncs      atomic.Uint64
	disconnects  atomic.Uint64
	backoffBase  time.Duration
	backoffLimit time.Duration
}

// Log field keys.
const (
	fieldChannels   = "channels"
	fieldPattern    = "pattern"
	fieldReason     = "reason"
	fieldSuppressed = "suppressed"
	fieldTimeout    = "timeout"
	fieldAfterError = "after_error"
	fieldType       = "type"
)

// New validates cfg, applies defaults, and returns a Subscriber that is not
// yet subscribed. Errors name the offending Config field.
func New(cfg Config) (*Subscriber, error) {
	switch {
	case cfg.Client == nil:
		return nil, errors.New("subscriber: Config.Client is required")
	case cfg.OnMessage == nil:
		return nil, errors.New("subscriber: Config.OnMessage is required")
	case cfg.OnResync == nil:
		return nil, errors.New("subscriber: Config.OnResync is required")
	case cfg.Sharded && len(cfg.Channels) == 0:
		return nil, errors.New("subscriber: Config.Channels is required with Sharded (sharded pub/sub has no pattern subscription)")
	case !cfg.Sharded && len(cfg.Channels) > 0:
		return nil, errors.New("subscriber: Config.Channels is only used with Sharded; without it every channel under ChannelPrefix is followed")
	}
	if cfg.ChannelPrefix == "" {
		cfg.ChannelPrefix = DefaultChannelPrefix
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Subscriber{
		cfg:          cfg,
		log:          cfg.Logger,
		heartbeatCh:  cfg.ChannelPrefix + HeartbeatSuffix,
		backoffBase:  50 * time.Millisecond,
		backoffLimit: 2 * time.Second,
	}
	if cfg.Sharded {
		for i, c := range cfg.Channels {
			if c == "" {
				return nil, fmt.Errorf("subscriber: Config.Channels[%d] is empty", i)
			}
			s.channels = append(s.channels, cfg.ChannelPrefix+c)
		}
		if cfg.HeartbeatTimeout > 0 {
			s.channels = append(s.channels, s.heartbeatCh)
		}
		slices.Sort(s.channels)
		s.channels = slices.Compact(s.channels)
		s.want = len(s.channels)
	} else {
		s.pattern = glob.Escape(cfg.ChannelPrefix) + "*"
		s.want = 1
	}
	return s, nil
}

// subscriptionField describes what Run subscribes to, for logs.
func (s *Subscriber) subscriptionField() zap.Field {
	if s.cfg.Sharded {
		return zap.Strings(fieldChannels, s.channels)
	}
	return zap.String(fieldPattern, s.pattern)
}

// Stats returns the counters. It is safe to call at any time, from any
// goroutine.
func (s *Subscriber) Stats() Stats {
	return Stats{
		Messages:    s.messages.Load(),
		Heartbeats:  s.heartbeats.Load(),
		Malformed:   s.malformed.Load(),
		Resyncs:     s.resyncs.Load(),
		Disconnects: s.disconnects.Load(),
	}
}

// errRunning is returned by a Run that overlaps another.
var errRunning = errors.New("subscriber: Run is already running")

// errStale ends a connection that stopped answering.
var errStale = errors.New("subscription connection answers no PING")

// Run subscribes and delivers messages until ctx is done, then closes its
// subscription, waits for every goroutine it started, and returns nil.
//
// Callbacks run one at a time on Run's goroutine, in delivery order; a slow
// callback delays the following messages (and Redis disconnects a
// subscriber that falls too far behind, which leads to a resync).
//
// OnResync is called with ReasonStart once the subscription is first
// confirmed, with ReasonReconnect each time it is confirmed again after the
// connection was lost, and with ReasonHeartbeat when HeartbeatTimeout passes
// without a heartbeat (counted from the first confirmation; once per outage:
// the check re-arms when heartbeats resume). While Redis is unreachable Run
// keeps retrying with backoff; it does not return.
//
// Run returns an error only if it is called while another Run of the same
// Subscriber is active, or if the Redis client was closed under it.
func (s *Subscriber) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errRunning
	}
	defer s.running.Store(false)

	r := &runState{s: s, malformedLog: logLimiter{every: 10 * time.Second}, errLog: logLimiter{every: 30 * time.Second}}
	defer r.stopHeartbeat()
	for {
		c := s.open(ctx)
		err := r.serve(ctx, c)
		c.close()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errStale):
			s.disconnects.Add(1)
			s.log.Warn("subscription connection answers no PING; replacing it")
		case err != nil:
			return err
		}
	}
}

// received is one result of PubSub.Receive.
type received struct {
	v   any
	err error
}

// conn is one PubSub with the goroutines that serve it. go-redis reconnects a
// PubSub by itself after errors; Run replaces the whole conn only when it
// stops answering.
type conn struct {
	ps      *redis.PubSub
	items   chan received
	pings   chan struct{}
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	waiting atomic.Int64 // UnixNano since the receiver waits in Receive; 0 when not waiting
	opened  time.Time

	disconnected bool // a receive error was seen since the last full subscription
}

// open creates a PubSub and starts its receiver and pinger. No network I/O
// happens on the caller's goroutine.
func (s *Subscriber) open(ctx context.Context) *conn {
	ctx, cancel := context.WithCancel(ctx)
	c := &conn{
		items:  make(chan received),
		pings:  make(chan struct{}, 1),
		cancel: cancel,
		opened: time.Now(),
	}
	var subscribe func(context.Context) error
	if s.cfg.Sharded {
		c.ps = s.cfg.Client.SSubscribe(ctx)
		subscribe = func(ctx context.Context) error { return c.ps.SSubscribe(ctx, s.channels...) }
	} else {
		c.ps = s.cfg.Client.PSubscribe(ctx)
		subscribe = func(ctx context.Context) error { return c.ps.PSubscribe(ctx, s.pattern) }
	}
	c.wg.Add(2)
	go s.receive(ctx, c, subscribe)
	go s.ping(ctx, c)
	return c
}

// close stops the goroutines of c, closes its PubSub and waits for them.
func (c *conn) close() {
	c.cancel()       // interrupts dials and the receiver's waits
	_ = c.ps.Close() // interrupts a blocked Receive
	c.wg.Wait()
}

// receive subscribes, then passes every result of Receive to c.items until
// ctx is done. After an error (go-redis has already tried to reconnect) it
// backs off before the next Receive, which dials again.
func (s *Subscriber) receive(ctx context.Context, c *conn, subscribe func(context.Context) error) {
	defer c.wg.Done()
	b := backoff.Backoff{Min: s.backoffBase, Max: s.backoffLimit}
	if err := subscribe(ctx); err != nil {
		// The channels are recorded anyway: the next Receive dials and
		// subscribes again.
		if !s.deliver(ctx, c, received{err: fmt.Errorf("subscribe: %w", err)}) || b.Wait(ctx) != nil {
			return
		}
	}
	for {
		c.waiting.Store(time.Now().UnixNano())
		v, err := c.ps.Receive(ctx)
		c.waiting.Store(0)
		if err != nil {
			err = fmt.Errorf("receive: %w", err)
		}
		if !s.deliver(ctx, c, received{v: v, err: err}) {
			return
		}
		if err == nil {
			b.Reset()
		} else if b.Wait(ctx) != nil {
			return
		}
	}
}

// deliver hands r to Run's loop; it reports false once ctx is done.
func (s *Subscriber) deliver(ctx context.Context, c *conn, r received) bool {
	select {
	case c.items <- r:
		return true
	case <-ctx.Done():
		return false
	}
}

// ping sends a PING on the PubSub connection for every request on c.pings;
// the reply comes back through Receive. A failed write makes go-redis
// reconnect.
func (s *Subscriber) ping(ctx context.Context, c *conn) {
	defer c.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.pings:
			if err := c.ps.Ping(ctx); err != nil && ctx.Err() == nil {
				s.log.Debug("ping on subscription connection failed", zap.Error(err))
			}
		}
	}
}

// runState is what Run remembers across connections. Only Run's goroutine
// touches it.
type runState struct {
	s            *Subscriber
	started      bool        // ReasonStart has been delivered
	heartbeat    *time.Timer // nil until started, or when heartbeats are off
	lost         bool        // heartbeats are overdue and ReasonHeartbeat was delivered
	malformedLog logLimiter
	errLog       logLimiter
}

// serve runs the event loop for c until ctx is done (nil), c stops answering
// (errStale) or the client was closed.
func (r *runState) serve(ctx context.Context, c *conn) error {
	s := r.s
	var pingC <-chan time.Time
	if s.cfg.PingInterval > 0 {
		t := time.NewTicker(s.cfg.PingInterval)
		defer t.Stop()
		pingC = t.C
	}
	lastActivity := c.opened
	var pingSent time.Time
	for {
		var heartbeatC <-chan time.Time
		if r.heartbeat != nil && !r.lost {
			heartbeatC = r.heartbeat.C
		}
		select {
		case <-ctx.Done():
			return nil
		case it := <-c.items:
			if it.err != nil {
				if err := r.receiveError(ctx, c, it.err); err != nil {
					return err
				}
				continue
			}
			lastActivity, pingSent = time.Now(), time.Time{}
			r.handle(c, it.v)
		case <-heartbeatC:
			r.lost = true
			s.log.Warn("no heartbeat from the invalidator daemon; dropping local cache",
				zap.Duration(fieldTimeout, s.cfg.HeartbeatTimeout))
			r.resync(ReasonHeartbeat)
		case now := <-pingC:
			if !pingSent.IsZero() {
				// Stale only if the receiver has been waiting on the socket
				// since before the PING and nothing came back: not while
				// it is backing off or waiting for this loop.
				if w := c.waiting.Load(); w != 0 && w <= pingSent.UnixNano() && now.Sub(pingSent) >= s.cfg.PingInterval {
					return errStale
				}
				continue
			}
			if now.Sub(lastActivity) >= s.cfg.PingInterval {
				select {
				case c.pings <- struct{}{}:
				default:
				}
				pingSent = now
			}
		}
	}
}

// receiveError handles a failed Receive: the subscription connection is lost
// and go-redis reconnects and resubscribes by itself on a later Receive.
func (r *runState) receiveError(ctx context.Context, c *conn, err error) error {
	s := r.s
	if errors.Is(err, redis.ErrClosed) && ctx.Err() == nil {
		return fmt.Errorf("subscriber: redis client closed: %w", err)
	}
	if !c.disconnected {
		c.disconnected = true
		s.disconnects.Add(1)
		s.log.Warn("subscription connection lost; reconnecting", zap.Error(err))
		return nil
	}
	if ok, suppressed := r.errLog.allow(time.Now()); ok {
		s.log.Warn("still reconnecting", zap.Error(err), zap.Int(fieldSuppressed, suppressed))
	}
	return nil
}

// handle processes one successful result of Receive.
func (r *runState) handle(c *conn, v any) {
	s := r.s
	switch v := v.(type) {
	case *redis.Message:
		r.message(v)
	case *redis.Subscription:
		switch v.Kind {
		case "psubscribe", "ssubscribe", "subscribe":
		default:
			return
		}
		// A fresh connection counts its subscriptions from 1; when the count
		// reaches s.want it is fully subscribed. That happens once per
		// connection: first at start, then after every reconnect, which
		// go-redis performs silently (it only shows as a receive error
		// followed by these confirmations).
		if v.Count != s.want {
			return
		}
		wasDisconnected := c.disconnected
		c.disconnected = false
		if !r.started {
			r.started = true
			s.log.Info("subscribed", s.subscriptionField())
			if s.cfg.HeartbeatTimeout > 0 {
				r.heartbeat = time.NewTimer(s.cfg.HeartbeatTimeout)
			}
			r.resync(ReasonStart)
			return
		}
		s.log.Info("resubscribed; dropping local cache", zap.Bool(fieldAfterError, wasDisconnected))
		r.resync(ReasonReconnect)
	case *redis.Pong:
		// Liveness only.
	default:
		s.log.Debug("unexpected pub/sub reply", zap.String(fieldType, fmt.Sprintf("%T", v)))
	}
}

// message decodes and dispatches one published message.
func (r *runState) message(rm *redis.Message) {
	s := r.s
	m, err := DecodeMessage(rm.Channel, []byte(rm.Payload))
	if err == nil && rm.Channel == s.heartbeatCh && m.Op != OpHeartbeat {
		err = fmt.Errorf("%w on %q: op %q on the heartbeat channel", ErrMalformed, rm.Channel, m.Op)
	}
	if err != nil {
		s.malformed.Add(1)
		if ok, suppressed := r.malformedLog.allow(time.Now()); ok {
			s.log.Warn("skipping malformed message", zap.Error(err), zap.Int(fieldSuppressed, suppressed))
		}
		return
	}
	if m.Op == OpHeartbeat {
		s.heartbeats.Add(1)
		if r.heartbeat == nil {
			return
		}
		if r.lost {
			r.lost = false
			s.log.Info("heartbeats resumed")
		}
		r.heartbeat.Reset(s.cfg.HeartbeatTimeout)
		return
	}
	s.messages.Add(1)
	s.cfg.OnMessage(m)
}

// resync tells the application to drop its cache.
func (r *runState) resync(reason string) {
	r.s.resyncs.Add(1)
	r.s.log.Info("resync", zap.String(fieldReason, reason))
	r.s.cfg.OnResync(reason)
}

func (r *runState) stopHeartbeat() {
	if r.heartbeat != nil {
		r.heartbeat.Stop()
	}
}

// logLimiter lets one log line through per interval and counts the rest.
type logLimiter struct {
	every      time.Duration
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many lines were suppressed since
// the last one logged.
func (l *logLimiter) allow(now time.Time) (bool, int) {
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return true, n
}
