package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/internal/testsrv"
)

// The namespace workload: a TRUNCATE of a rule's table, whose wide form is
// one INCR of the rule's version key (namespace) or a SCAN MATCH + UNLINK
// over the whole keyspace, with millions of unrelated keys in Redis. It
// runs on a Redis of its own, so that the other workloads do not carry
// those keys, and on tables, a slot and a publication of its own.
const (
	nsSlot        = "invalidator_bench_ns"
	nsVersionKey  = "bench:ns:v"
	nsSamples     = 100 // TRUNCATEs with the namespace, per keyspace size
	nsScanSamples = 3   // TRUNCATEs with SCAN, per keyspace size below 1M keys (1 from there: each takes seconds)
	nsTimeout     = 5 * time.Minute
)

const nsRules = `version: 1
channel_prefix: "cache:invalidate:"
rules:
  - name: ns-versioned
    table: public.ns_versioned
    keys: ["bench:versioned:{id}"]
    channel: "ns_versioned:{id}"
    namespace: "` + nsVersionKey + `"
  - name: ns-scanned
    table: public.ns_scanned
    keys: ["bench:scanned:{id}"]
    channel: "ns_scanned:{id}"
`

// namespaceResult is one wide form at one keyspace size.
type namespaceResult struct {
	Keys    int    `json:"unrelated_keys"`
	Form    string `json:"form"` // "namespace" or "scan"
	Samples int    `json:"samples"`
	// INCR: commit_time to the keyspace notification of the INCR (the
	// namespace form only); Message: commit_time to the invalidation
	// message, published once the wide form is applied.
	IncrP50MS    float64 `json:"incr_p50_ms,omitempty"`
	IncrMaxMS    float64 `json:"incr_max_ms,omitempty"`
	MessageP50MS float64 `json:"message_p50_ms"`
	MessageMaxMS float64 `json:"message_max_ms"`
	// Redis commands per TRUNCATE (INFO commandstats)
	IncrCalls float64 `json:"incr_per_truncate"`
	ScanCalls float64 `json:"scan_per_truncate"`
}

func (s *suite) namespace(ctx context.Context) (_ []namespaceResult, err error) {
	srv, err := testsrv.NewRedisWith(testsrv.RedisOptions{Args: []string{"--appendonly", "no", "--save", "", "--enable-debug-command", "yes"}})
	if err != nil {
		return nil, fmt.Errorf("start redis: %w", err)
	}
	defer srv.Close()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true, ReadTimeout: nsTimeout})
	defer rdb.Close()
	if err := rdb.ConfigSet(ctx, "notify-keyspace-events", "K$").Err(); err != nil {
		return nil, fmt.Errorf("redis config set notify-keyspace-events: %w", err)
	}
	if _, err := query(ctx, s.srv.dbURL, `CREATE TABLE ns_versioned(id int PRIMARY KEY); CREATE TABLE ns_scanned(id int PRIMARY KEY)`); err != nil {
		return nil, err
	}
	defer func() {
		// the slot would hold WAL back for the workloads after this one
		cleanup := fmt.Sprintf(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '%s';
DROP PUBLICATION IF EXISTS %s; DROP TABLE ns_versioned, ns_scanned`, nsSlot, nsSlot)
		if _, cerr := query(context.WithoutCancel(ctx), s.srv.dbURL, cleanup); cerr != nil && err == nil {
			err = cerr
		}
	}()
	rules := filepath.Join(s.dir, "namespace-rules.yaml")
	if err := os.WriteFile(rules, []byte(nsRules), 0o644); err != nil {
		return nil, fmt.Errorf("write rules: %w", err)
	}
	d, err := s.startDaemon(ctx, "namespace", "INVALIDATOR_REDIS_URL="+srv.URL(), "INVALIDATOR_RULES="+rules,
		"INVALIDATOR_SLOT="+nsSlot, "INVALIDATOR_PUBLICATION="+nsSlot)
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := d.stop(); stopErr != nil && err == nil {
			err = fmt.Errorf("stop daemon: %w", stopErr)
		}
	}()
	w, err := newNSWatch(ctx, rdb)
	if err != nil {
		return nil, err
	}
	defer w.close()
	conn, err := pgconn.Connect(ctx, s.srv.dbURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var out []namespaceResult
	for _, n := range s.opts.namespaceKeys {
		s.log.printf("namespace: DEBUG POPULATE %d unrelated keys", n)
		if err := rdb.Do(ctx, "DEBUG", "POPULATE", n, "unrelated").Err(); err != nil {
			return nil, fmt.Errorf("debug populate: %w", err)
		}
		for _, form := range []struct {
			name, table string
			samples     int
		}{{"namespace", "ns_versioned", nsSamples}, {"scan", "ns_scanned", scanSamples(n)}} {
			r, err := s.nsRun(ctx, conn, rdb, w, form.table, form.samples)
			if err != nil {
				return nil, fmt.Errorf("%s, %d keys: %w", form.name, n, err)
			}
			r.Keys, r.Form = n, form.name
			s.log.printf("namespace: %d keys, %s: COMMIT to message p50 %.2f ms, max %.2f ms; to INCR p50 %.2f ms, max %.2f ms; %.0f SCAN, %.0f INCR per TRUNCATE",
				n, form.name, r.MessageP50MS, r.MessageMaxMS, r.IncrP50MS, r.IncrMaxMS, r.ScanCalls, r.IncrCalls)
			out = append(out, r)
		}
	}
	return out, nil
}

// nsRun TRUNCATEs table samples times, one at a time, and times each from
// its commit_time to the keyspace notification of the INCR (if it bumps
// the version) and to its message.
func (s *suite) nsRun(ctx context.Context, conn *pgconn.PgConn, rdb *redis.Client, w *nsWatch, table string, samples int) (namespaceResult, error) {
	r := namespaceResult{Samples: samples}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		return r, fmt.Errorf("config resetstat: %w", err)
	}
	var incr, msg []float64
	for range samples {
		if _, err := queryConn(ctx, conn, "TRUNCATE "+table); err != nil {
			return r, err
		}
		m, err := w.message(ctx, "cache:invalidate:"+table+":*")
		if err != nil {
			return r, err
		}
		msg = append(msg, float64(m.at.Sub(m.commit).Microseconds())/1000)
		if table == "ns_versioned" {
			at, err := w.bump(ctx)
			if err != nil {
				return r, err
			}
			incr = append(incr, float64(at.Sub(m.commit).Microseconds())/1000)
		}
	}
	r.MessageP50MS, r.MessageMaxMS = medianMax(msg)
	r.IncrP50MS, r.IncrMaxMS = medianMax(incr)
	calls, err := commandCalls(ctx, rdb)
	if err != nil {
		return r, err
	}
	r.IncrCalls, r.ScanCalls = float64(calls["incr"])/float64(samples), float64(calls["scan"])/float64(samples)
	return r, nil
}

// scanSamples is how many TRUNCATEs the SCAN form is timed with: a SCAN
// of the whole keyspace takes seconds per ten million keys.
func scanSamples(keys int) int {
	if keys >= 1_000_000 {
		return 1
	}
	return nsScanSamples
}

func medianMax(v []float64) (float64, float64) {
	if len(v) == 0 {
		return 0, 0
	}
	slices.Sort(v)
	return v[len(v)/2], v[len(v)-1]
}

var cmdstatRE = regexp.MustCompile(`cmdstat_(\w+):calls=(\d+)`)

func commandCalls(ctx context.Context, rdb *redis.Client) (map[string]int, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("info commandstats: %w", err)
	}
	out := map[string]int{}
	for _, m := range cmdstatRE.FindAllStringSubmatch(info, -1) {
		out[m[1]], _ = strconv.Atoi(m[2])
	}
	return out, nil
}

// nsWatch receives the workload's messages and the keyspace notifications
// of the version key, stamping each with the time it arrived. Its
// goroutine ends when close closes the subscription.
type nsWatch struct {
	ps    *redis.PubSub
	msgs  chan nsEvent
	bumps chan time.Time
	stop  chan struct{}
	done  chan struct{}
}

type nsEvent struct {
	channel    string
	commit, at time.Time
}

func newNSWatch(ctx context.Context, rdb *redis.Client) (*nsWatch, error) {
	ps := rdb.PSubscribe(ctx, "cache:invalidate:ns_*", "__keyspace@0__:"+nsVersionKey)
	for range 2 {
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			return nil, fmt.Errorf("psubscribe: %w", err)
		}
	}
	w := &nsWatch{ps: ps, msgs: make(chan nsEvent, 64), bumps: make(chan time.Time, 64), stop: make(chan struct{}), done: make(chan struct{})}
	go w.loop(ctx)
	return w, nil
}

func (w *nsWatch) loop(ctx context.Context) {
	defer close(w.done)
	for {
		m, err := w.ps.ReceiveMessage(ctx) // ends when ps is closed
		if err != nil {
			return
		}
		at := time.Now()
		if strings.HasPrefix(m.Channel, "__keyspace@") {
			select {
			case w.bumps <- at:
			case <-w.stop:
				return
			}
			continue
		}
		var body struct {
			CommitTime time.Time `json:"commit_time"`
		}
		if json.Unmarshal([]byte(m.Payload), &body) != nil {
			continue
		}
		select {
		case w.msgs <- nsEvent{channel: m.Channel, commit: body.CommitTime, at: at}:
		case <-w.stop:
			return
		}
	}
}

func (w *nsWatch) close() {
	close(w.stop)
	_ = w.ps.Close()
	<-w.done
}

// message waits for the next message on channel.
func (w *nsWatch) message(ctx context.Context, channel string) (nsEvent, error) {
	timeout := time.After(nsTimeout)
	for {
		select {
		case e := <-w.msgs:
			if e.channel == channel {
				return e, nil
			}
		case <-timeout:
			return nsEvent{}, fmt.Errorf("no message on %s within %s", channel, nsTimeout)
		case <-ctx.Done():
			return nsEvent{}, ctx.Err()
		}
	}
}

// bump waits for the next INCR of the version key.
func (w *nsWatch) bump(ctx context.Context) (time.Time, error) {
	select {
	case at := <-w.bumps:
		return at, nil
	case <-time.After(nsTimeout):
		return time.Time{}, fmt.Errorf("no INCR of %s within %s", nsVersionKey, nsTimeout)
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
}
