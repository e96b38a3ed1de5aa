package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	sub "github.com/cachewire/invalidator/subscriber"
)

// The consistency workload: writers update hot rows (each UPDATE stores
// its transaction id, a version), cache-aside readers fill caches through
// several modes at the same time, and when the writers stop and the
// daemon has applied their last commit, every cached entry is compared
// with the database. A stale entry is one that no later invalidation will
// remove: it stays until its TTL or eviction. A run is several such rounds
// (the caches are kept from one to the next), which multiplies the entries
// checked.
//
// The plain modes must show stale entries: that is what proves the check
// can fail. When one shows none after a run's rounds, the run makes the
// race likelier (more readers, then a longer load delay) and plays its
// rounds again, up to -consistency-escalations times; a plain mode that still
// shows none is reported, as a run whose check proved nothing.

// consistencyOptions are the workload's flags.
type consistencyOptions struct {
	duration  time.Duration
	rounds    int
	hotRows   int
	readers   int
	loadDelay time.Duration
	think     time.Duration
	// escalations bounds how often a run makes the race likelier when a
	// plain mode showed no stale entry.
	escalations int
}

// maxEscalatedReaders bounds the readers per mode an escalation reaches
// (each reader holds its own PostgreSQL connection, five modes at once).
const maxEscalatedReaders = 16

func (c *consistencyOptions) flags(fs *flag.FlagSet) {
	fs.DurationVar(&c.duration, "consistency-duration", 3*time.Second, "length of each round of writes of a consistency run (whole seconds)")
	fs.IntVar(&c.rounds, "consistency-rounds", 5, "rounds of writes then checks in each consistency run (one run per -rates entry)")
	fs.IntVar(&c.hotRows, "consistency-rows", 1000, "hot rows the consistency writers update and its readers read")
	fs.IntVar(&c.readers, "consistency-readers", 8, "concurrent readers per cache mode")
	fs.DurationVar(&c.loadDelay, "consistency-load-delay", 3*time.Millisecond, "pause inside each load, after the SELECT (makes the fill race likelier)")
	fs.DurationVar(&c.think, "consistency-think", time.Millisecond, "pause between two reads of one reader")
	fs.IntVar(&c.escalations, "consistency-escalations", 2, "times a consistency run doubles its readers (up to 16), then its load delay, and plays its rounds again while a plain mode shows no stale entry")
}

func (c *consistencyOptions) check() error {
	switch {
	case c.duration < time.Second || c.duration%time.Second != 0:
		return usagef("-consistency-duration must be a whole number of seconds, at least 1s")
	case c.rounds < 1:
		return usagef("-consistency-rounds must be positive")
	case c.hotRows < 1:
		return usagef("-consistency-rows must be positive")
	case c.readers < 1:
		return usagef("-consistency-readers must be positive")
	case c.loadDelay < 0 || c.think < 0:
		return usagef("-consistency-load-delay and -consistency-think must not be negative")
	case c.escalations < 0:
		return usagef("-consistency-escalations must not be negative")
	}
	return nil
}

// Cache modes, in the order they are reported.
const (
	modePlain      = "redis GET/load/SET"
	modeFiller     = "redis Filler (lease)"
	modeLocalSet   = "in-process Get/load/Set"
	modeLocalGen   = "in-process SetIfGeneration"
	modeLocalLease = "in-process GetOrLoad (lease)"
)

// consistencyRules renders two Redis keys per row, one for each Redis mode;
// the in-process modes use the plain key's name.
const consistencyRules = `version: 1
channel_prefix: "` + channelPrefix + `"
rules:
  - name: hot
    table: public.shards
    keys: ["plain:{tenant_id}:{id}", "filler:{tenant_id}:{id}"]
    channel: "shard:{tenant_id}:{id}"
    scope: [tenant_id]
`

// hotTenant holds the hot rows (ids 1..hotRows); sentinelKey is a row of
// another tenant that the end of a run updates.
const (
	hotTenant   = "t0"
	sentinelKey = "plain:t1:1"
)

// consistencyResult is one run of the workload at one commit rate.
type consistencyResult struct {
	Rate    int `json:"rate"`
	Rounds  int `json:"rounds"`
	Rows    int `json:"rows"`
	Readers int `json:"readers_per_mode"` // at the end (after escalations)
	// LoadDelayMS is the pause inside each load at the end.
	LoadDelayMS float64 `json:"load_delay_ms"`
	// Escalations is how often the run made the race likelier because a
	// plain mode showed no stale entry.
	Escalations int `json:"escalations"`
	// PlainWithoutStale are the plain modes that showed no stale entry
	// even so: for them the run's check proved nothing.
	PlainWithoutStale []string          `json:"plain_modes_without_stale,omitempty"`
	Pgbench           pgbenchRun        `json:"pgbench"`
	Modes             []consistencyMode `json:"modes"`
	Usage             usage             `json:"resources"`
}

// consistencyMode is what one cache mode's readers did and left behind.
type consistencyMode struct {
	Mode    string   `json:"mode"`
	Stale   int      `json:"stale"`
	Checked int      `json:"checked"`
	Nines   *float64 `json:"nines"` // -log10(stale/checked); nil with no stale entry
	Reads   int64    `json:"reads"`
	Hits    int64    `json:"hits"`
	Misses  int64    `json:"misses"`
	Stored  int64    `json:"fills_stored"`
	P50MS   float64  `json:"read_p50_ms"`
	P99MS   float64  `json:"read_p99_ms"`
	// HitRatio = Hits/Reads; FillSuccess = Stored/Misses
	HitRatio    float64 `json:"hit_ratio"`
	FillSuccess float64 `json:"fill_success"`
	// Why loaded values were not stored (modes that can refuse a store).
	Voids *fillVoids `json:"voids,omitempty"`
}

// fillVoids counts the loads a mode did not store, by reason.
type fillVoids struct {
	// ByKey, ByPattern, ByResync: GetOrLoad's store was voided by an
	// invalidation of the key, a pattern matching it, or a resync.
	ByKey     int64 `json:"by_key,omitempty"`
	ByPattern int64 `json:"by_pattern,omitempty"`
	ByResync  int64 `json:"by_resync,omitempty"`
	// LeaseLost: the Filler's lease was deleted (or expired) during the
	// load.
	LeaseLost int64 `json:"lease_lost,omitempty"`
	// AnyInvalidation: SetIfGeneration skipped the store after an
	// invalidation of any key.
	AnyInvalidation int64 `json:"any_invalidation,omitempty"`
	// NotLeased: loads done without a lease (a Filler reader that gave up
	// waiting for another's fill), which never store.
	NotLeased int64 `json:"not_leased,omitempty"`
}

// cacheMode is one way of filling a cache: read reads row id through it,
// loading from db on a miss, and reports whether it was a hit; check
// compares its entries with the rows.
type cacheMode struct {
	name string
	// plain modes store whatever they load: they must show stale entries
	plain bool
	read  func(ctx context.Context, db *pgx.Conn, id int) (hit bool, err error)
	check func(ctx context.Context, db map[int]string) (stale, checked int, err error)
	// stored returns how many loaded values were stored (nil: every miss)
	stored func() int64
	// voids returns why loads were not stored (nil: never refused)
	voids func() fillVoids
	// conns are the readers' PostgreSQL connections, one each
	conns []*pgx.Conn

	reads, hits    atomic.Int64
	mu             sync.Mutex
	latUS          []int64
	stale, checked int // summed over the rounds' checks
}

func (s *suite) consistency(ctx context.Context, rate int) (consistencyResult, error) {
	o := s.opts.consistency
	rows := min(o.hotRows, s.opts.hugeRows/tenants)
	r := consistencyResult{Rate: rate, Rounds: o.rounds, Rows: rows, Readers: o.readers}
	name := "consistency-" + strconv.Itoa(rate)
	rules := filepath.Join(s.dir, "rules-consistency.yaml")
	if err := os.WriteFile(rules, []byte(consistencyRules), 0o644); err != nil {
		return r, fmt.Errorf("write rules: %w", err)
	}
	// The Redis readers of two modes share one client: enough connections
	// for all of them after every escalation, so none waits for another.
	rdb := redis.NewClient(&redis.Options{Addr: s.srv.redis.Addr(), DisableIdentity: true, PoolSize: 2*max(o.readers, maxEscalatedReaders) + 2})
	defer rdb.Close()

	s.log.printf("%s: %d hot rows updated at %d tx/s, %d rounds of %s; %d readers per mode, each with its own PostgreSQL connection", name, rows, rate, o.rounds, o.duration, o.readers)
	u, err := s.withDaemon(ctx, name, []string{"INVALIDATOR_RULES=" + rules}, func(d *daemon, m *meter) error {
		w, err := newConsistencyWorld(ctx, s, rdb, rows)
		if err != nil {
			return err
		}
		defer w.close()
		if err := m.start(); err != nil {
			return err
		}
		var seconds float64
		round := 0
		for {
			for range o.rounds {
				round++
				run, err := w.run(ctx, s, fmt.Sprintf("%s-%d", name, round), rate)
				if err != nil {
					return err
				}
				if err := w.check(ctx); err != nil {
					return err
				}
				r.Pgbench.Processed += run.Processed
				r.Pgbench.Failed += run.Failed
				seconds += float64(run.Processed) / max(run.TPS, 1)
			}
			zero := w.plainWithoutStale()
			if len(zero) == 0 || r.Escalations == o.escalations {
				r.PlainWithoutStale = zero
				break
			}
			r.Escalations++
			w.escalate()
			s.log.printf("%s: no stale entry in %s: making the race likelier, %d readers per mode and a %s load delay, %d more rounds",
				name, strings.Join(zero, ", "), w.readers, w.delay, o.rounds)
		}
		r.Rounds, r.Readers, r.LoadDelayMS = round, w.readers, float64(w.delay)/float64(time.Millisecond)
		r.Pgbench.TPS = float64(r.Pgbench.Processed) / max(seconds, 1e-9)
		r.Modes = w.results()
		return nil
	})
	if err != nil {
		return r, err
	}
	r.Usage = u
	for _, m := range r.Modes {
		s.log.printf("%s: %-30s stale %d of %d, hit %.3f, fills stored %.4f", name, m.Mode, m.Stale, m.Checked, m.HitRatio, m.FillSuccess)
	}
	for _, m := range r.PlainWithoutStale {
		s.log.printf("%s: warning: %s showed no stale entry after %d escalations: this run's check proved nothing", name, m, r.Escalations)
	}
	return r, nil
}

// consistencyWorld is one run's caches, readers and the subscriber that
// feeds the in-process caches.
type consistencyWorld struct {
	dbURL     string
	ctl       *pgx.Conn // the checks' connection
	rdb       *redis.Client
	rows      int
	delay     time.Duration
	think     time.Duration
	readers   int
	modes     []*cacheMode
	local     []*sub.Cache
	sentinel  chan struct{}
	subStop   context.CancelFunc
	subDone   chan error
	subClient *redis.Client
}

func newConsistencyWorld(ctx context.Context, s *suite, rdb *redis.Client, rows int) (*consistencyWorld, error) {
	o := s.opts.consistency
	w := &consistencyWorld{dbURL: s.srv.dbURL, rdb: rdb, rows: rows, delay: o.loadDelay, think: o.think, readers: o.readers,
		sentinel: make(chan struct{}, 1), subDone: make(chan error, 1)}
	// Start from empty caches.
	for _, prefix := range []string{"plain:", "filler:"} {
		keys := make([]string, 0, rows)
		for id := 1; id <= rows; id++ {
			keys = append(keys, prefix+hotTenant+":"+strconv.Itoa(id))
		}
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			return nil, fmt.Errorf("redis del: %w", err)
		}
	}
	filler, err := sub.NewFiller(rdb, sub.FillConfig{LeaseTTL: 2 * time.Second, Wait: 50 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	localSet, localGen, localLease := sub.NewCache(10*rows), sub.NewCache(10*rows), sub.NewCache(10*rows)
	w.local = []*sub.Cache{localSet, localGen, localLease}
	w.modes = []*cacheMode{w.plainRedisMode(), w.fillerMode(filler), w.localSetMode(localSet), w.localGenMode(localGen), w.localLeaseMode(localLease)}
	if w.ctl, err = pgx.Connect(ctx, w.dbURL); err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	if err := w.connect(ctx); err != nil {
		w.close()
		return nil, err
	}
	if err := w.subscribe(ctx, s.srv.redis.Addr()); err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// plainRedisMode reads Redis, and on a miss loads and SETs: the race.
func (w *consistencyWorld) plainRedisMode() *cacheMode {
	return &cacheMode{name: modePlain, plain: true, read: func(ctx context.Context, db *pgx.Conn, id int) (bool, error) {
		key := w.key("plain:", id)
		if _, err := w.rdb.Get(ctx, key).Result(); err == nil {
			return true, nil
		} else if !errors.Is(err, redis.Nil) {
			return false, err
		}
		v, err := w.load(ctx, db, id)
		if err != nil {
			return false, err
		}
		return false, w.rdb.Set(ctx, key, v, 0).Err()
	}, check: w.checkRedis("plain:")}
}

// fillerMode reads Redis through the subscriber's lease-protected Filler.
func (w *consistencyWorld) fillerMode(filler *sub.Filler) *cacheMode {
	return &cacheMode{name: modeFiller, read: func(ctx context.Context, db *pgx.Conn, id int) (bool, error) {
		hit := true
		_, err := filler.Get(ctx, w.key("filler:", id), func(ctx context.Context) ([]byte, error) {
			hit = false
			v, err := w.load(ctx, db, id)
			return []byte(v), err
		})
		return hit, err
	}, check: w.checkRedis("filler:"), stored: func() int64 { return int64(filler.Stats().Fills) },
		voids: func() fillVoids {
			st := filler.Stats()
			// Misses counts every load; those neither stored nor
			// voided were loaded without a lease (a failed load ends
			// the run before this is read).
			notLeased := int64(st.Misses) - int64(st.Fills) - int64(st.FillsVoided)
			return fillVoids{LeaseLost: int64(st.FillsVoided), NotLeased: max(notLeased, 0)}
		}}
}

// localSetMode reads an in-process cache, and on a miss loads and Sets:
// the race, in process.
func (w *consistencyWorld) localSetMode(c *sub.Cache) *cacheMode {
	return &cacheMode{name: modeLocalSet, plain: true, read: func(ctx context.Context, db *pgx.Conn, id int) (bool, error) {
		key := w.key("plain:", id)
		if _, ok := c.Get(key); ok {
			return true, nil
		}
		v, err := w.load(ctx, db, id)
		if err == nil {
			c.Set(key, v)
		}
		return false, err
	}, check: w.checkLocal(c)}
}

// localGenMode stores a load only if no invalidation at all came during it.
func (w *consistencyWorld) localGenMode(c *sub.Cache) *cacheMode {
	var stored, skipped atomic.Int64
	return &cacheMode{name: modeLocalGen, read: func(ctx context.Context, db *pgx.Conn, id int) (bool, error) {
		key := w.key("plain:", id)
		if _, ok := c.Get(key); ok {
			return true, nil
		}
		gen := c.Generation()
		v, err := w.load(ctx, db, id)
		if err == nil {
			if c.SetIfGeneration(gen, key, v) {
				stored.Add(1)
			} else {
				skipped.Add(1)
			}
		}
		return false, err
	}, check: w.checkLocal(c), stored: stored.Load,
		voids: func() fillVoids { return fillVoids{AnyInvalidation: skipped.Load()} }}
}

// localLeaseMode reads an in-process cache through GetOrLoad.
func (w *consistencyWorld) localLeaseMode(c *sub.Cache) *cacheMode {
	return &cacheMode{name: modeLocalLease, read: func(ctx context.Context, db *pgx.Conn, id int) (bool, error) {
		hit := true
		_, err := c.GetOrLoad(ctx, w.key("plain:", id), func(ctx context.Context) (any, error) {
			hit = false
			return w.load(ctx, db, id)
		})
		return hit, err
	}, check: w.checkLocal(c), stored: func() int64 { return int64(c.FillStats().Fills) },
		voids: func() fillVoids {
			st := c.FillStats()
			return fillVoids{ByKey: int64(st.VoidedByKey), ByPattern: int64(st.VoidedByPattern), ByResync: int64(st.VoidedByResync)}
		}}
}

// connect opens a PostgreSQL connection for each reader that lacks one:
// a reader's loads never wait for another's.
func (w *consistencyWorld) connect(ctx context.Context) error {
	for _, m := range w.modes {
		for len(m.conns) < w.readers {
			c, err := pgx.Connect(ctx, w.dbURL)
			if err != nil {
				return fmt.Errorf("connect reader: %w", err)
			}
			m.conns = append(m.conns, c)
		}
	}
	return nil
}

// escalate makes the fill race likelier for the next rounds: twice the
// readers, up to maxEscalatedReaders (connected by the next run), and once
// there, twice the load delay (at least 1ms). More readers put more loads
// in flight without making each load longer, so the lease modes' fill
// success is spared as long as the machine has CPU for them.
func (w *consistencyWorld) escalate() {
	if w.readers < maxEscalatedReaders {
		w.readers = min(2*w.readers, maxEscalatedReaders)
		return
	}
	w.delay = max(2*w.delay, time.Millisecond)
}

// plainWithoutStale names the plain modes that have shown no stale entry.
func (w *consistencyWorld) plainWithoutStale() []string {
	var out []string
	for _, m := range w.modes {
		if m.plain && m.stale == 0 {
			out = append(out, m.name)
		}
	}
	return out
}

func (w *consistencyWorld) key(prefix string, id int) string {
	return prefix + hotTenant + ":" + strconv.Itoa(id)
}

// load reads the row's version from PostgreSQL (the primary) on the
// reader's own connection, then waits the load delay: the window in which
// a commit and its invalidation can overtake the fill.
func (w *consistencyWorld) load(ctx context.Context, db *pgx.Conn, id int) (string, error) {
	var v string
	if err := db.QueryRow(ctx, "SELECT payload FROM shards WHERE tenant_id = $1 AND id = $2", hotTenant, id).Scan(&v); err != nil {
		return "", fmt.Errorf("load row %d: %w", id, err)
	}
	if w.delay > 0 {
		time.Sleep(w.delay)
	}
	return v, nil
}

// subscribe starts the subscriber that feeds the in-process caches and
// waits for its first resync (the subscription is live).
func (w *consistencyWorld) subscribe(ctx context.Context, addr string) error {
	w.subClient = redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	started := make(chan struct{})
	var once sync.Once
	sb, err := sub.New(sub.Config{
		Client: w.subClient,
		OnMessage: func(m sub.Message) {
			for _, c := range w.local {
				c.Apply(m)
			}
			if slices.Contains(m.Keys, sentinelKey) {
				select {
				case w.sentinel <- struct{}{}:
				default:
				}
			}
		},
		OnResync: func(reason string) {
			for _, c := range w.local {
				c.Resync(reason)
			}
			once.Do(func() { close(started) })
		},
		Logger: zap.NewNop(),
	})
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.subStop = cancel
	go func() { w.subDone <- sb.Run(sctx) }()
	select {
	case <-started:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("the in-process caches' subscriber was not subscribed within 10s")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *consistencyWorld) close() {
	if w.subStop != nil {
		w.subStop()
		<-w.subDone
	}
	if w.subClient != nil {
		_ = w.subClient.Close()
	}
	for _, m := range w.modes {
		for _, c := range m.conns {
			_ = c.Close(context.Background())
		}
	}
	if w.ctl != nil {
		_ = w.ctl.Close(context.Background())
	}
}

// run starts the readers, runs the writers (pgbench), stops the readers,
// and waits until the daemon has applied every commit and the in-process
// caches have received its messages.
func (w *consistencyWorld) run(ctx context.Context, s *suite, name string, rate int) (pgbenchRun, error) {
	if err := w.connect(ctx); err != nil {
		return pgbenchRun{}, err
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, len(w.modes)*w.readers)
	for _, m := range w.modes {
		for _, db := range m.conns[:w.readers] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := w.readLoop(ctx, m, db, &stop); err != nil {
					errs <- fmt.Errorf("%s: %w", m.name, err)
					stop.Store(true)
				}
			}()
		}
	}
	script := fmt.Sprintf("\\set id random(1, %d)\nUPDATE shards SET payload = txid_current()::text WHERE tenant_id = '%s' AND id = :id;\n", w.rows, hotTenant)
	run, err := s.runPgbench(ctx, name, pgbenchArgs{clients: 4, threads: 2, rate: rate, duration: s.opts.consistency.duration, script: script})
	stop.Store(true)
	wg.Wait() // in-flight fills finish: storing after the last commit is the race
	close(errs)
	if err != nil {
		return run, err
	}
	if err := <-errs; err != nil {
		return run, err
	}
	// A commit after every writer's: once its message has reached the
	// in-process caches, the daemon has deleted the keys of all earlier
	// commits and published their messages, in commit order.
	select {
	case <-w.sentinel: // a duplicate delivery of an earlier round's
	default:
	}
	if _, err := query(ctx, s.srv.dbURL, "UPDATE shards SET payload = txid_current()::text WHERE tenant_id = 't1' AND id = 1"); err != nil {
		return run, err
	}
	select {
	case <-w.sentinel:
		return run, nil
	case <-time.After(drainMax):
		return run, fmt.Errorf("the daemon's message for the last commit did not arrive within %s", drainMax)
	case <-ctx.Done():
		return run, ctx.Err()
	}
}

// readLoop reads random hot rows through m, loading from db, until stop
// is set.
func (w *consistencyWorld) readLoop(ctx context.Context, m *cacheMode, db *pgx.Conn, stop *atomic.Bool) error {
	lat := make([]int64, 0, 1<<14)
	defer func() {
		m.mu.Lock()
		m.latUS = append(m.latUS, lat...)
		m.mu.Unlock()
	}()
	for !stop.Load() {
		id := 1 + rand.IntN(w.rows)
		start := time.Now()
		hit, err := m.read(ctx, db, id)
		if err != nil {
			return err
		}
		lat = append(lat, time.Since(start).Microseconds())
		m.reads.Add(1)
		if hit {
			m.hits.Add(1)
		}
		if w.think > 0 {
			time.Sleep(w.think)
		}
	}
	return nil
}

// check compares every cached entry with the database.
func (w *consistencyWorld) check(ctx context.Context) error {
	rows, err := w.ctl.Query(ctx, "SELECT id, payload FROM shards WHERE tenant_id = $1 AND id <= $2", hotTenant, w.rows)
	if err != nil {
		return fmt.Errorf("read rows: %w", err)
	}
	db := make(map[int]string, w.rows)
	for rows.Next() {
		var id int
		var v string
		if err := rows.Scan(&id, &v); err != nil {
			return fmt.Errorf("read rows: %w", err)
		}
		db[id] = v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read rows: %w", err)
	}
	for _, m := range w.modes {
		stale, checked, err := m.check(ctx, db)
		if err != nil {
			return fmt.Errorf("%s: check: %w", m.name, err)
		}
		m.stale += stale
		m.checked += checked
	}
	return nil
}

// results are the modes' figures over every round.
func (w *consistencyWorld) results() []consistencyMode {
	var out []consistencyMode
	for _, m := range w.modes {
		stale, checked := m.stale, m.checked
		r := consistencyMode{Mode: m.name, Stale: stale, Checked: checked, Reads: m.reads.Load(), Hits: m.hits.Load()}
		r.Misses = r.Reads - r.Hits
		r.Stored = r.Misses
		if m.stored != nil {
			r.Stored = m.stored()
		}
		r.Nines = nines(stale, checked)
		r.HitRatio = ratio(r.Hits, r.Reads)
		r.FillSuccess = ratio(r.Stored, r.Misses)
		if m.voids != nil {
			v := m.voids()
			r.Voids = &v
		}
		slices.Sort(m.latUS)
		r.P50MS, r.P99MS = percentileMS(m.latUS, 0.50), percentileMS(m.latUS, 0.99)
		out = append(out, r)
	}
	return out
}

// checkRedis compares the Redis keys prefix+row with the rows.
func (w *consistencyWorld) checkRedis(prefix string) func(context.Context, map[int]string) (int, int, error) {
	return func(ctx context.Context, db map[int]string) (stale, checked int, err error) {
		pipe := w.rdb.Pipeline()
		cmds := make(map[int]*redis.StringCmd, len(db))
		for id := range db {
			cmds[id] = pipe.Get(ctx, w.key(prefix, id))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return 0, 0, fmt.Errorf("redis get: %w", err)
		}
		for id, c := range cmds {
			v, err := c.Result()
			if errors.Is(err, redis.Nil) || sub.IsLeaseMarker([]byte(v)) {
				continue
			}
			checked++
			if v != db[id] {
				stale++
			}
		}
		return stale, checked, nil
	}
}

// checkLocal compares the in-process cache's entries with the rows.
func (w *consistencyWorld) checkLocal(c *sub.Cache) func(context.Context, map[int]string) (int, int, error) {
	return func(_ context.Context, db map[int]string) (stale, checked int, err error) {
		for id, want := range db {
			v, ok := c.Get(w.key("plain:", id))
			if !ok {
				continue
			}
			checked++
			if v != want {
				stale++
			}
		}
		return stale, checked, nil
	}
}

// nines is -log10(stale/checked), nil when nothing is stale.
func nines(stale, checked int) *float64 {
	if stale == 0 || checked == 0 {
		return nil
	}
	n := -math.Log10(float64(stale) / float64(checked))
	return &n
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
