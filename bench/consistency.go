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

// consistencyOptions are the workload's flags.
type consistencyOptions struct {
	duration  time.Duration
	rounds    int
	hotRows   int
	readers   int
	loadDelay time.Duration
	think     time.Duration
}

func (c *consistencyOptions) flags(fs *flag.FlagSet) {
	fs.DurationVar(&c.duration, "consistency-duration", 3*time.Second, "length of each round of writes of a consistency run (whole seconds)")
	fs.IntVar(&c.rounds, "consistency-rounds", 5, "rounds of writes then checks in each consistency run (one run per -rates entry)")
	fs.IntVar(&c.hotRows, "consistency-rows", 1000, "hot rows the consistency writers update and its readers read")
	fs.IntVar(&c.readers, "consistency-readers", 8, "concurrent readers per cache mode")
	fs.DurationVar(&c.loadDelay, "consistency-load-delay", 3*time.Millisecond, "pause inside each load, after the SELECT (makes the fill race likelier)")
	fs.DurationVar(&c.think, "consistency-think", time.Millisecond, "pause between two reads of one reader")
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
	Rate    int               `json:"rate"`
	Rounds  int               `json:"rounds"`
	Rows    int               `json:"rows"`
	Readers int               `json:"readers_per_mode"`
	Pgbench pgbenchRun        `json:"pgbench"`
	Modes   []consistencyMode `json:"modes"`
	Usage   usage             `json:"resources"`
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
}

// cacheMode is one way of filling a cache: read reads row id through it
// and reports whether it was a hit; check compares its entries with the
// rows.
type cacheMode struct {
	name  string
	read  func(ctx context.Context, id int) (hit bool, err error)
	check func(ctx context.Context, db map[int]string) (stale, checked int, err error)
	// stored returns how many loaded values were stored (nil: every miss)
	stored func() int64

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
	pool, err := newConnPool(ctx, s.srv.dbURL, 24)
	if err != nil {
		return r, err
	}
	defer pool.close()
	rdb := redis.NewClient(&redis.Options{Addr: s.srv.redis.Addr(), DisableIdentity: true, PoolSize: 2 * o.readers})
	defer rdb.Close()

	s.log.printf("%s: %d hot rows updated at %d tx/s, %d rounds of %s; %d readers per mode", name, rows, rate, o.rounds, o.duration, o.readers)
	u, err := s.withDaemon(ctx, name, []string{"INVALIDATOR_RULES=" + rules}, func(d *daemon, m *meter) error {
		w, err := newConsistencyWorld(ctx, s, pool, rdb, rows)
		if err != nil {
			return err
		}
		defer w.close()
		if err := m.start(); err != nil {
			return err
		}
		var seconds float64
		for i := range o.rounds {
			run, err := w.run(ctx, s, fmt.Sprintf("%s-%d", name, i+1), rate)
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
	return r, nil
}

// consistencyWorld is one run's caches, readers and the subscriber that
// feeds the in-process caches.
type consistencyWorld struct {
	pool      *connPool
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

func newConsistencyWorld(ctx context.Context, s *suite, pool *connPool, rdb *redis.Client, rows int) (*consistencyWorld, error) {
	o := s.opts.consistency
	w := &consistencyWorld{pool: pool, rdb: rdb, rows: rows, delay: o.loadDelay, think: o.think, readers: o.readers,
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
	var genStored atomic.Int64
	w.modes = []*cacheMode{
		{name: modePlain, read: func(ctx context.Context, id int) (bool, error) {
			key := w.key("plain:", id)
			if _, err := rdb.Get(ctx, key).Result(); err == nil {
				return true, nil
			} else if !errors.Is(err, redis.Nil) {
				return false, err
			}
			v, err := w.load(ctx, id)
			if err != nil {
				return false, err
			}
			return false, rdb.Set(ctx, key, v, 0).Err()
		}, check: w.checkRedis("plain:")},
		{name: modeFiller, read: func(ctx context.Context, id int) (bool, error) {
			hit := true
			_, err := filler.Get(ctx, w.key("filler:", id), func(ctx context.Context) ([]byte, error) {
				hit = false
				v, err := w.load(ctx, id)
				return []byte(v), err
			})
			return hit, err
		}, check: w.checkRedis("filler:"), stored: func() int64 { return int64(filler.Stats().Fills) }},
		{name: modeLocalSet, read: func(ctx context.Context, id int) (bool, error) {
			key := w.key("plain:", id)
			if _, ok := localSet.Get(key); ok {
				return true, nil
			}
			v, err := w.load(ctx, id)
			if err == nil {
				localSet.Set(key, v)
			}
			return false, err
		}, check: w.checkLocal(localSet)},
		{name: modeLocalGen, read: func(ctx context.Context, id int) (bool, error) {
			key := w.key("plain:", id)
			if _, ok := localGen.Get(key); ok {
				return true, nil
			}
			gen := localGen.Generation()
			v, err := w.load(ctx, id)
			if err == nil && localGen.SetIfGeneration(gen, key, v) {
				genStored.Add(1)
			}
			return false, err
		}, check: w.checkLocal(localGen), stored: genStored.Load},
		{name: modeLocalLease, read: func(ctx context.Context, id int) (bool, error) {
			hit := true
			_, err := localLease.GetOrLoad(ctx, w.key("plain:", id), func(ctx context.Context) (any, error) {
				hit = false
				return w.load(ctx, id)
			})
			return hit, err
		}, check: w.checkLocal(localLease), stored: func() int64 { return int64(localLease.FillStats().Fills) }},
	}
	if err := w.subscribe(ctx, s.srv.redis.Addr()); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *consistencyWorld) key(prefix string, id int) string {
	return prefix + hotTenant + ":" + strconv.Itoa(id)
}

// load reads the row's version from PostgreSQL (the primary), then waits
// the load delay: the window in which a commit and its invalidation can
// overtake the fill.
func (w *consistencyWorld) load(ctx context.Context, id int) (string, error) {
	var v string
	c := w.pool.get()
	err := c.QueryRow(ctx, "SELECT payload FROM shards WHERE tenant_id = $1 AND id = $2", hotTenant, id).Scan(&v)
	w.pool.put(c)
	if err != nil {
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
	_ = w.subClient.Close()
}

// run starts the readers, runs the writers (pgbench), stops the readers,
// and waits until the daemon has applied every commit and the in-process
// caches have received its messages.
func (w *consistencyWorld) run(ctx context.Context, s *suite, name string, rate int) (pgbenchRun, error) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, len(w.modes)*w.readers)
	for _, m := range w.modes {
		for range w.readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := w.readLoop(ctx, m, &stop); err != nil {
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

// readLoop reads random hot rows through m until stop is set.
func (w *consistencyWorld) readLoop(ctx context.Context, m *cacheMode, stop *atomic.Bool) error {
	lat := make([]int64, 0, 1<<14)
	defer func() {
		m.mu.Lock()
		m.latUS = append(m.latUS, lat...)
		m.mu.Unlock()
	}()
	for !stop.Load() {
		id := 1 + rand.IntN(w.rows)
		start := time.Now()
		hit, err := m.read(ctx, id)
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
	c := w.pool.get()
	defer w.pool.put(c)
	rows, err := c.Query(ctx, "SELECT id, payload FROM shards WHERE tenant_id = $1 AND id <= $2", hotTenant, w.rows)
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

// connPool is a fixed set of PostgreSQL connections for the readers.
type connPool struct{ conns chan *pgx.Conn }

func newConnPool(ctx context.Context, url string, n int) (*connPool, error) {
	p := &connPool{conns: make(chan *pgx.Conn, n)}
	for range n {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("connect: %w", err)
		}
		p.conns <- c
	}
	return p, nil
}

func (p *connPool) get() *pgx.Conn  { return <-p.conns }
func (p *connPool) put(c *pgx.Conn) { p.conns <- c }

// close closes the connections; all must have been put back.
func (p *connPool) close() {
	for {
		select {
		case c := <-p.conns:
			_ = c.Close(context.Background())
		default:
			return
		}
	}
}
