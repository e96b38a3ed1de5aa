// Package ops is the daemon's operations surface: Prometheus metrics, the
// state behind /status and /readyz, and the HTTP server that serves them.
package ops

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/publisher"
)

// Metrics holds the daemon's collectors in its own registry and the live
// state that /status reports. It implements the observer interfaces of
// cdc, router and publisher.
type Metrics struct {
	Registry *prometheus.Registry
	log      *zap.Logger

	transactions   prometheus.Counter
	changes        *prometheus.CounterVec
	keysDeleted    prometheus.Counter
	messages       *prometheus.CounterVec
	errors         *prometheus.CounterVec
	lagBytes       prometheus.Gauge
	confirmedLSN   prometheus.Gauge
	latency        prometheus.Histogram
	batchTxns      prometheus.Histogram
	batchKeys      prometheus.Histogram
	applySeconds   prometheus.Histogram
	renderFailures *prometheus.CounterVec
	wide           *prometheus.CounterVec
	pastBound      *prometheus.CounterVec
	role           *prometheus.GaugeVec
	lastCommit     prometheus.Gauge
	probeRTT       prometheus.Gauge
	heartbeats     prometheus.Counter

	// changeCounters caches changes' children: WithLabelValues hashes
	// its labels each call, and Applied counts every transaction
	changeMu       sync.Mutex
	changeCounters map[changeLabels]prometheus.Counter

	state State
}

// changeLabels are the labels of one invalidator_changes_total child.
type changeLabels struct {
	table string
	op    cdc.Op
}

// changeCounter returns changes' child for table and op.
func (m *Metrics) changeCounter(table string, op cdc.Op) prometheus.Counter {
	m.changeMu.Lock()
	defer m.changeMu.Unlock()
	l := changeLabels{table, op}
	c, ok := m.changeCounters[l]
	if !ok {
		if m.changeCounters == nil {
			m.changeCounters = map[changeLabels]prometheus.Counter{}
		}
		c = m.changes.WithLabelValues(table, op.String())
		m.changeCounters[l] = c
	}
	return c
}

// State is what /status and /readyz report; safe for concurrent use.
type State struct {
	role           atomic.Int32
	confirmed      atomic.Uint64
	serverEnd      atomic.Uint64
	lastCommitNano atomic.Int64
	redisFailing   atomic.Bool
}

// NewMetrics creates and registers every collector.
func NewMetrics(log *zap.Logger) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{Registry: reg, log: log}
	m.transactions = prometheus.NewCounter(prometheus.CounterOpts{Name: "invalidator_transactions_total", Help: "Committed transactions applied."})
	m.changes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invalidator_changes_total", Help: "Row changes applied, by table and operation."}, []string{"table", "op"})
	m.keysDeleted = prometheus.NewCounter(prometheus.CounterOpts{Name: "invalidator_keys_deleted_total", Help: "Redis keys that existed and were unlinked."})
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invalidator_messages_published_total", Help: "Invalidation messages published, by sink."}, []string{"sink"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invalidator_errors_total", Help: "Errors, by kind."}, []string{"kind"})
	m.lagBytes = prometheus.NewGauge(prometheus.GaugeOpts{Name: "invalidator_replication_lag_bytes", Help: "Bytes of WAL between the server's end and the confirmed position."})
	m.confirmedLSN = prometheus.NewGauge(prometheus.GaugeOpts{Name: "invalidator_confirmed_lsn", Help: "Position last confirmed to PostgreSQL."})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "invalidator_commit_to_publish_seconds", Help: "Time from COMMIT to Redis acknowledging the invalidation.",
		Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}})
	m.batchTxns = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "invalidator_batch_size_transactions", Help: "Transactions per applied batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 12)})
	m.batchKeys = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "invalidator_batch_size_keys", Help: "Exact keys per applied batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)})
	m.applySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "invalidator_apply_seconds", Help: "Time Redis took to apply one batch.", Buckets: prometheus.ExponentialBuckets(0.0001, 3, 12)})
	m.renderFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invalidator_render_failures_total", Help: "Keys skipped because a value was NULL or unavailable, by rule."}, []string{"rule"})
	m.wide = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invalidator_wide_form_total", Help: "Transactions in which a rule switched to its wide form, by rule."}, []string{"rule"})
	m.pastBound = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "invalidator_exact_past_bound_total",
		Help: "Transactions in which a rule went past the key bound and kept deleting exact keys, its messages in wide form, by rule."}, []string{"rule"})
	m.role = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "invalidator_role", Help: "1 for the daemon's current role (starting, standby, active)."}, []string{"role"})
	m.lastCommit = prometheus.NewGauge(prometheus.GaugeOpts{Name: "invalidator_last_commit_timestamp_seconds", Help: "Commit time of the last applied transaction."})
	m.probeRTT = prometheus.NewGauge(prometheus.GaugeOpts{Name: "invalidator_heartbeat_roundtrip_seconds", Help: "Time from writing the heartbeat probe into the WAL to decoding it from the slot."})
	m.heartbeats = prometheus.NewCounter(prometheus.CounterOpts{Name: "invalidator_heartbeats_total", Help: "Heartbeat messages published."})
	for _, c := range []prometheus.Collector{m.probeRTT, m.heartbeats, m.transactions, m.changes, m.keysDeleted, m.messages, m.errors, m.lagBytes, m.confirmedLSN,
		m.latency, m.batchTxns, m.batchKeys, m.applySeconds, m.renderFailures, m.wide, m.pastBound, m.role, m.lastCommit} {
		f(c)
	}
	m.RoleChanged(cdc.RoleStarting)
	return m
}

// State returns the live state.
func (m *Metrics) State() *State { return &m.state }

// RoleChanged implements cdc.Observer.
func (m *Metrics) RoleChanged(r cdc.Role) {
	m.state.role.Store(int32(r))
	for _, name := range []cdc.Role{cdc.RoleStarting, cdc.RoleStandby, cdc.RoleActive} {
		v := 0.0
		if name == r {
			v = 1
		}
		m.role.WithLabelValues(name.String()).Set(v)
	}
}

// Position implements cdc.Observer.
func (m *Metrics) Position(confirmed, serverEnd cdc.LSN) {
	m.state.confirmed.Store(uint64(confirmed))
	m.state.serverEnd.Store(uint64(serverEnd))
	m.confirmedLSN.Set(float64(confirmed))
	if serverEnd >= confirmed {
		m.lagBytes.Set(float64(serverEnd - confirmed))
	}
}

// StreamError implements cdc.Observer.
func (m *Metrics) StreamError(kind string) { m.errors.WithLabelValues("stream_" + kind).Inc() }

// Error counts an error of another kind.
func (m *Metrics) Error(kind string) { m.errors.WithLabelValues(kind).Inc() }

// RenderSkipped implements router.Observer: counted always, logged once per rule.
func (m *Metrics) RenderSkipped(rule, table, column string, first bool) {
	m.renderFailures.WithLabelValues(rule).Inc()
	if first && m.log != nil {
		m.log.Warn("a key was skipped: its column is NULL or not in the row image (logged once per rule; see invalidator_render_failures_total)",
			zap.String("rule", rule), zap.String("table", table), zap.String("column", column))
	}
}

// NoRule implements router.Observer: counted always, logged once per table description.
func (m *Metrics) NoRule(table string, first bool) {
	m.errors.WithLabelValues("no_rule").Inc()
	if first && m.log != nil {
		m.log.Warn("changes on a published table that no rule names are ignored (was a rule's table renamed? see invalidator_errors_total{kind=\"no_rule\"})",
			zap.String("table", table))
	}
}

// Applied implements publisher.Observer.
func (m *Metrics) Applied(batch []publisher.Applied, st publisher.Stats, took time.Duration) {
	m.state.redisFailing.Store(false)
	now := time.Now()
	keys, txns := 0, 0
	var last time.Time
	for _, c := range batch {
		res := c.Txn.Result()
		keys += len(res.ToUnlink())
		if c.Early {
			continue // part of a transaction still arriving: only its keys count
		}
		txns++
		last = c.CommitTime
		m.latency.Observe(now.Sub(c.CommitTime).Seconds())
		for _, cc := range res.Counts {
			m.changeCounter(cc.Table, cc.Op).Add(float64(cc.N))
		}
		for _, r := range res.Wide {
			m.wide.WithLabelValues(r).Inc()
		}
		for _, r := range res.PastBound {
			m.pastBound.WithLabelValues(r).Inc()
		}
	}
	if txns > 0 { // not a batch of early parts only
		m.state.lastCommitNano.Store(last.UnixNano())
		m.lastCommit.Set(float64(last.UnixNano()) / 1e9)
		m.transactions.Add(float64(txns))
		m.batchTxns.Observe(float64(txns))
	}
	m.keysDeleted.Add(float64(st.KeysDeleted))
	m.messages.WithLabelValues("redis").Add(float64(st.Messages))
	m.batchKeys.Observe(float64(keys))
	m.applySeconds.Observe(took.Seconds())
}

// Bridged implements publisher.Observer.
func (m *Metrics) Bridged(n int) { m.messages.WithLabelValues("nats").Add(float64(n)) }

// BridgeFailed implements publisher.Observer.
func (m *Metrics) BridgeFailed(error) { m.errors.WithLabelValues("nats").Inc() }

// ApplyFailed implements publisher.Observer.
func (m *Metrics) ApplyFailed(error) {
	m.state.redisFailing.Store(true)
	m.errors.WithLabelValues("redis").Inc()
}

// ProbeRoundTrip records how long a heartbeat probe took through the WAL.
func (m *Metrics) ProbeRoundTrip(d time.Duration) { m.probeRTT.Set(d.Seconds()) }

// Heartbeat counts a published heartbeat.
func (m *Metrics) Heartbeat() {
	m.heartbeats.Inc()
	m.messages.WithLabelValues("redis").Inc()
}

// Role returns the current role.
func (s *State) Role() cdc.Role { return cdc.Role(s.role.Load()) }

// Status is the /status document.
type Status struct {
	Role           string `json:"role"`
	Slot           string `json:"slot"`
	ConfirmedLSN   string `json:"confirmed_lsn"`
	LagBytes       int64  `json:"lag_bytes"`
	LastCommitTime string `json:"last_commit_time,omitempty"`
}

// Snapshot returns the current status.
func (s *State) Snapshot(slot string) Status {
	conf, end := cdc.LSN(s.confirmed.Load()), cdc.LSN(s.serverEnd.Load())
	st := Status{Role: s.Role().String(), Slot: slot, ConfirmedLSN: conf.String()}
	if end > conf {
		st.LagBytes = int64(end - conf)
	}
	if n := s.lastCommitNano.Load(); n != 0 {
		st.LastCommitTime = time.Unix(0, n).UTC().Format(publisher.TimeLayout)
	}
	return st
}
