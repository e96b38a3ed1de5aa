package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// report is everything one run of the suite measured.
type report struct {
	Machine     machine             `json:"machine"`
	Servers     serversInfo         `json:"servers"`
	Options     optionsInfo         `json:"options"`
	Bulk        []bulkResult        `json:"bulk,omitempty"`
	Steady      []steadyResult      `json:"steady,omitempty"`
	Unthrottled *unthrottledResult  `json:"unthrottled,omitempty"`
	Huge        *hugeResult         `json:"huge,omitempty"`
	Consistency []consistencyResult `json:"consistency,omitempty"`
	Sinks       []sinkResult        `json:"sinks,omitempty"`
	Scale       []scaleResult       `json:"scale,omitempty"`
	Namespace   []namespaceResult   `json:"namespace,omitempty"`
	Targets     []target            `json:"targets"`
}

type optionsInfo struct {
	Duration  string   `json:"duration"`
	Workloads []string `json:"workloads"`
	// namespace workload
	NamespaceKeys []int    `json:"namespace_keys,omitempty"`
	Rates         []int    `json:"rates"`
	BulkRows      int      `json:"bulk_rows"`
	BulkRepeat    int      `json:"bulk_repeat"`
	HugeRows      int      `json:"huge_rows"`
	DaemonEnv     []string `json:"daemon_env,omitempty"`
	// consistency workload
	ConsistencyDuration  string `json:"consistency_duration"`
	ConsistencyLoadDelay string `json:"consistency_load_delay"`
	// sinks workload
	Sinks         []string `json:"sinks"`
	SinksDuration string   `json:"sinks_duration"`
}

func reportOptions(o options) optionsInfo {
	return optionsInfo{Duration: o.duration.String(), Workloads: o.workloads, Rates: o.rates, BulkRows: o.bulkRows, BulkRepeat: o.bulkRepeat, HugeRows: o.hugeRows, DaemonEnv: o.daemonEnv,
		ConsistencyDuration: o.consistency.duration.String(), ConsistencyLoadDelay: o.consistency.loadDelay.String(),
		Sinks: o.sinks, SinksDuration: o.sinksDuration.String(), NamespaceKeys: o.namespaceKeys}
}

// target is one reference figure and whether the run met it.
type target struct {
	What  string  `json:"what"`
	Want  string  `json:"want"`
	Got   float64 `json:"got"`
	Unit  string  `json:"unit"`
	Met   bool    `json:"met"`
	Lower bool    `json:"-"` // true when lower is better
}

// checkTargets compares the results with the reference targets (the README's
// Benchmarks table).
func checkTargets(rep *report) []target {
	var ts []target
	atMost := func(what string, got, limit float64, unit string) {
		ts = append(ts, target{What: what, Want: fmt.Sprintf("<= %g %s", limit, unit), Got: got, Unit: unit, Met: got <= limit, Lower: true})
	}
	atLeast := func(what string, got, limit float64, unit string) {
		ts = append(ts, target{What: what, Want: strings.TrimSpace(fmt.Sprintf(">= %g %s", limit, unit)), Got: got, Unit: unit, Met: got >= limit})
	}
	for _, b := range rep.Bulk {
		switch b.Name {
		case "bulk":
			atLeast("bulk: floor/daemon", b.Ratio, 0.8, "")
			atMost("bulk: daemon peak RSS", b.Usage.PeakRSSMB, 64, "MB")
			atMost("bulk: daemon CPU per 200k changes", b.Usage.CPUSeconds*200_000/float64(b.Rows), 1, "s")
		case "bulk-default": // past the bound, exact keys (ADR 27)
			atLeast("bulk-default: floor/daemon", b.Ratio, 0.8, "")
			atMost("bulk-default: daemon peak RSS", b.Usage.PeakRSSMB, 64, "MB")
		}
	}
	for _, st := range rep.Steady {
		switch st.Rate {
		case 10_000:
			atMost("steady 10k/s: p50", st.P50MS, 1, "ms")
			atMost("steady 10k/s: p99", st.P99MS, 3, "ms")
			atMost("steady 10k/s: lost", float64(st.Lost), 0, "messages")
		case 2_000:
			atMost("steady 2k/s: p99", st.P99MS, 2, "ms")
			atMost("steady 2k/s: lost", float64(st.Lost), 0, "messages")
		}
	}
	if u := rep.Unthrottled; u != nil {
		atMost("unthrottled: lag at end", u.LagSeconds*1000, 100, "ms")
		if u.Pgbench.Processed > 0 { // one change a transaction
			atMost("unthrottled: daemon CPU per change", u.Usage.CPUSeconds*1e6/float64(u.Pgbench.Processed), 5, "µs")
		}
		if u.FloorPgbench.TPS > 0 {
			atLeast("unthrottled: commit rate, daemon / pg_recvlogical alone", u.Pgbench.TPS/u.FloorPgbench.TPS, 0.85, "")
		}
	}
	if h := rep.Huge; h != nil {
		atMost("huge: daemon peak RSS", h.Usage.PeakRSSMB, 256, "MB")
	}
	for _, c := range rep.Consistency {
		rate := fmt.Sprintf("consistency %gk/s: ", float64(c.Rate)/1000)
		for _, m := range c.Modes {
			switch m.Mode {
			case modeFiller, modeLocalLease:
				atMost(rate+"stale, "+m.Mode, float64(m.Stale), 0, "entries")
			case modePlain, modeLocalSet:
				// Stale entries in each plain mode show that the check can
				// fail at this rate.
				atLeast(rate+"stale, "+m.Mode+" (the check can fail)", float64(m.Stale), 1, "entries")
			}
			if c.Rate == 2_000 && m.Mode == modeLocalLease {
				atLeast(rate+"fill success, "+m.Mode, 100*m.FillSuccess, 99, "%")
			}
		}
	}
	for _, sk := range rep.Sinks {
		for _, st := range sk.Steady {
			rate := fmt.Sprintf("sinks %s: steady %gk/s: ", sk.Sink, float64(st.Rate)/1000)
			if st.Rate == 10_000 {
				atMost(rate+"p99", st.P99MS, 10, "ms")
			}
			atMost(rate+"lost", float64(st.Lost), 0, "messages")
		}
		if b := sk.Bulk; b != nil {
			atMost("sinks "+sk.Sink+": bulk lost", float64(b.Lost), 0, "messages")
			ts = append(ts, target{What: "sinks " + sk.Sink + ": bulk confirmed, s after COMMIT", Want: "within " + confirmWait.String() + " of its messages",
				Got: b.ConfirmedSeconds, Unit: "s", Met: b.ConfirmedSeconds > 0})
			atMost("sinks "+sk.Sink+": bulk daemon/floor", b.Ratio, 2, "")
		}
	}
	for _, n := range rep.Namespace {
		if n.Form == "namespace" && n.Keys >= 10_000_000 {
			atMost(fmt.Sprintf("namespace, %dM keys: COMMIT to INCR p50", n.Keys/1_000_000), n.IncrP50MS, 10, "ms")
		}
	}
	return ts
}

func writeJSON(w io.Writer, rep *report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return nil
}

// writeTable prints the report for people.
// table is the text report being written: its sections, and the
// RESOURCES rows each workload's section adds.
type table struct {
	b     strings.Builder
	usage [][]string
}

// section writes one section: its header, then rows aligned in columns.
func (t *table) section(header string, rows [][]string) {
	t.b.WriteString("\n" + header + "\n")
	w := tabwriter.NewWriter(&t.b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t"))
	}
	_ = w.Flush()
}

// addUsage adds a workload's row to RESOURCES.
func (t *table) addUsage(name string, u usage) {
	t.usage = append(t.usage, []string{name, f1(u.Seconds), f1(u.PeakRSSMB), f2(u.CPUSeconds), f2(u.WalsenderCPUSeconds),
		f2(u.RedisCPUSeconds), f2(u.SuiteCPUSeconds), f1(u.WaitedSeconds) + " / " + f1(u.WalsenderWaitedSeconds),
		i64(u.Switches) + " / " + i64(u.WalsenderSwitches),
		f0(u.HostBusyPercent), f1(u.OtherCPUSeconds)})
}

// writeTable writes rep as text: the machine, then a section per workload
// that ran, the resources each used and the targets.
func writeTable(out io.Writer, rep *report) error {
	var t table
	t.header(rep)
	t.bulk(rep)
	t.steady(rep)
	if u := rep.Unthrottled; u != nil {
		t.unthrottled(rep, u)
	}
	if h := rep.Huge; h != nil {
		t.huge(h)
	}
	t.consistency(rep)
	t.sinks(rep)
	t.scale(rep)
	t.namespace(rep)
	t.resources(rep)
	t.targets(rep)
	if _, err := io.WriteString(out, t.b.String()); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// header writes the machine, the servers and the table.
func (t *table) header(rep *report) {
	m, sv := rep.Machine, rep.Servers
	fmt.Fprintf(&t.b, "invalidator benchmark  %s  commit %s\n", m.Date, m.Commit)
	fmt.Fprintf(&t.b, "machine: %d CPUs, %s, %d MB RAM, Linux %s, %s; load average at start %s\n", m.CPUs, m.CPUModel, m.MemoryMB, m.Kernel, m.Go, m.LoadAverage)
	fmt.Fprintf(&t.b, "servers: %s (%s, logical_decoding_work_mem=%s for the bench database), %s (%s), all on 127.0.0.1\n",
		sv.Postgres, sv.PostgresConfig, sv.DecodingWorkMem, sv.Redis, sv.RedisConfig)
	if len(rep.Options.DaemonEnv) > 0 {
		fmt.Fprintf(&t.b, "daemon environment added: %s\n", strings.Join(rep.Options.DaemonEnv, " "))
	}
	fmt.Fprintf(&t.b, "table: shards(tenant_id, id, payload), %d rows, REPLICA IDENTITY DEFAULT; rule: 1 key + 1 channel per row\n", sv.Rows)
}

// bulk writes the bulk runs.
func (t *table) bulk(rep *report) {
	if len(rep.Bulk) == 0 {
		return
	}
	rows := [][]string{{"run", "max_keys/txn", "rows", "update_s", "floor_s", "daemon_s", "msgs_s", "floor/daemon", "ratio_range", "rows/s",
		"messages", "wide_msgs", "daemon_slot", "floor_slot"}}
	for _, r := range rep.Bulk {
		lo, hi := r.Ratio, r.Ratio
		for _, x := range r.Runs {
			lo, hi = min(lo, x.Ratio), max(hi, x.Ratio)
		}
		rows = append(rows, []string{r.Name, r.MaxKeysPerTxn, itoa(r.Rows), f3(r.UpdateSeconds), f3(r.FloorSeconds), f3(r.DaemonSeconds),
			f3(r.MessagesSeconds), f2(r.Ratio), f2(lo) + "-" + f2(hi), f0(r.RowsPerSecond), itoa(r.Messages), itoa(r.WideMessages),
			r.DaemonSlot.String(), r.FloorSlot.String()})
		t.addUsage(r.Name, r.Usage)
	}
	t.section(fmt.Sprintf("BULK: one transaction UPDATEs every row with id <= rows/100; seconds from the moment COMMIT returned; %d runs:\n"+
		"  floor_s and daemon_s are medians, floor/daemon their ratio, ratio_range the runs' own ratios, other columns the median run's;\n"+
		"  floor = pg_recvlogical (pgoutput v2, own slot, running at the same time) received the COMMIT; daemon = last cached key deleted;\n"+
		"  msgs = the suite's subscriber received the last message; *_slot = how the walsender handed the transaction over", rep.Options.BulkRepeat), rows)
}

// steady writes the steady runs.
func (t *table) steady(rep *report) {
	if len(rep.Steady) == 0 {
		return
	}
	rows := [][]string{{"rate/s", "clients", "pgbench_tps", "committed", "received", "lost", "dup", "p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "max_ms",
		"floor_p50/p99/p99.9_ms", "behind_at_end_MB(walsender/daemon)", "txns/batch", "apply_p50/p99_ms<=", "ack_p99_ms<=", "daemon_CPU_us/txn"}}
	for _, r := range rep.Steady {
		rows = append(rows, []string{itoa(r.Rate), itoa(r.Clients), f1(r.Pgbench.TPS), i64(r.Pgbench.Processed), itoa(r.Received), i64(r.Lost),
			itoa(r.Duplicates), f2(r.P50MS), f2(r.P90MS), f2(r.P99MS), f2(r.P999MS), f2(r.MaxMS),
			f2(r.Floor.P50MS) + " / " + f2(r.Floor.P99MS) + " / " + f2(r.Floor.P999MS), f1(r.WalsenderBehindMB) + " / " + f1(r.DaemonBehindMB),
			f1(r.Daemon.TxnsPerBatch), bucket(r.Daemon.ApplyP50MS) + " / " + bucket(r.Daemon.ApplyP99MS), bucket(r.Daemon.CommitToAckP99MS), f1(r.DaemonCPUUSPerTxn)})
		t.addUsage("steady-"+itoa(r.Rate), r.Usage)
	}
	t.section("STEADY: pgbench -R rate, single-row UPDATE transactions, "+rep.Options.Duration+"; latency = receive time - commit_time;\n"+
		"  floor = the same run read by pg_recvlogical alone (test_decoding, include-timestamp; its output polled every 1 ms);\n"+
		"  txns/batch, apply (Redis round trip of a batch) and ack (COMMIT to Redis ack) from the daemon's /metrics (histogram bucket bounds);\n"+
		"  daemon_CPU_us/txn = the daemon's CPU time over the run (see RESOURCES) / committed", rows)
}

// unthrottled writes the unthrottled runs.
func (t *table) unthrottled(rep *report, u *unthrottledResult) {
	rows := [][]string{{"reader", "clients", "commit_rate/s", "committed", "received", "lost", "lag_at_end_s", "last_msg_s", "p50_ms", "p99_ms", "max_ms",
		"behind_at_end_MB(walsender/daemon)", "txns/batch", "apply_p50/p99_ms<="},
		{"pg_recvlogical", itoa(u.Clients), f1(u.FloorPgbench.TPS), i64(u.FloorPgbench.Processed), "-", "-", f3(u.FloorLagSeconds), "-", "-", "-", "-", "-", "-", "-"},
		{"daemon", itoa(u.Clients), f1(u.Pgbench.TPS), i64(u.Pgbench.Processed), itoa(u.Received), i64(u.Lost), f3(u.LagSeconds), f3(u.LastMessageSeconds), f2(u.P50MS), f2(u.P99MS),
			f2(u.MaxMS), f1(u.WalsenderBehindMB) + " / " + f1(u.DaemonBehindMB), f1(u.Daemon.TxnsPerBatch),
			bucket(u.Daemon.ApplyP50MS) + " / " + bucket(u.Daemon.ApplyP99MS)}}
	t.addUsage("unthrottled", u.Usage)
	t.section("UNTHROTTLED: pgbench without -R, "+rep.Options.Duration+", run twice: read by pg_recvlogical alone (the floor; lag = until its walsender sent\n"+
		"  all WAL written by then), then by the daemon alone (lag = the last commit to Redis deleting its keys, by the Redis time of\n"+
		"  its journal entry; last_msg = pgbench exit to the suite's subscriber receiving the last message)", rows)
}

// huge writes the huge transaction.
func (t *table) huge(h *hugeResult) {
	rows := [][]string{{"rows", "max_keys/txn", "update_s", "confirmed_s", "messages", "wide_msgs"},
		{itoa(h.Rows), h.MaxKeysPerTxn, f1(h.UpdateSeconds), f2(h.ConfirmedSeconds), itoa(h.Messages), itoa(h.WideMessages)}}
	t.addUsage("huge", h.Usage)
	t.section("HUGE: one transaction UPDATEs every row; confirmed = the slot's confirmed position passed the commit", rows)
}

// consistency writes the consistency runs and their notes.
func (t *table) consistency(rep *report) {
	if len(rep.Consistency) == 0 {
		return
	}
	rows := [][]string{{"rate/s", "pgbench_tps", "rounds", "readers", "delay_ms", "mode", "stale", "checked", "nines", "hit_ratio", "fill_success",
		"not_stored", "reads", "misses", "read_p50_ms", "read_p99_ms"}}
	var notes []string
	for _, c := range rep.Consistency {
		for _, m := range c.Modes {
			rows = append(rows, []string{itoa(c.Rate), f1(c.Pgbench.TPS), itoa(c.Rounds), itoa(c.Readers), f1(c.LoadDelayMS), m.Mode,
				itoa(m.Stale), itoa(m.Checked), ninesText(m), f3(m.HitRatio), f3(m.FillSuccess),
				voidsText(m), i64(m.Reads), i64(m.Misses), f2(m.P50MS), f2(m.P99MS)})
		}
		t.addUsage("consistency-"+itoa(c.Rate), c.Usage)
		if c.Escalations > 0 {
			notes = append(notes, fmt.Sprintf("  %d/s: a plain mode showed no stale entry, so the race was made likelier %d time(s) (the readers and delay_ms above are the last)",
				c.Rate, c.Escalations))
		}
		for _, m := range c.PlainWithoutStale {
			notes = append(notes, fmt.Sprintf("  WARNING %d/s: %s showed no stale entry: at this rate the check proved nothing", c.Rate, m))
		}
	}
	c := rep.Consistency[0]
	t.section(fmt.Sprintf("CONSISTENCY: pgbench -R rate UPDATEs %d hot rows (each stores its xid, a version), rounds of %s, while readers (per mode,\n"+
		"  each with its own PostgreSQL connection) read random rows through each cache mode at once (loads from PostgreSQL, then a\n"+
		"  delay_ms pause); after each round's writers stop and the daemon applied the last commit, every cached entry is compared with\n"+
		"  its row: stale = differs (no later invalidation will remove it); stale and checked are summed over the rounds;\n"+
		"  nines = -log10(stale/checked) (\">x\": none stale, fewer than 1 in checked); fill_success = loaded values stored / misses;\n"+
		"  not_stored = why the other loads were not: key/pattern/resync = GetOrLoad's key invalidated by its key, a pattern, a resync;\n"+
		"  lease_lost = the Filler's lease deleted; unleased = loaded after waiting out another's lease; any_inval = SetIfGeneration's",
		c.Rows, rep.Options.ConsistencyDuration), rows)
	for _, n := range notes {
		t.b.WriteString(n + "\n")
	}
}

// sinks writes the sinks' steady and bulk runs.
func (t *table) sinks(rep *report) {
	if len(rep.Sinks) == 0 {
		return
	}
	rows := [][]string{{"sink", "run", "committed/sent", "received", "lost", "dup", "p50_ms", "p99_ms", "p99.9_ms", "max_ms", "p99/floor_p99"}}
	bulk := [][]string{{"sink", "rows", "update_s", "daemon_s", "keys_s", "confirmed_s", "messages", "dup", "lost", "floor_s", "floor_messages", "floor_lost", "daemon/floor", "daemon_peak_RSS_MB"}}
	for _, sk := range rep.Sinks {
		for _, st := range sk.Steady {
			ratio := "-"
			if st.Floor.P99MS > 0 {
				ratio = f2(st.P99MS / st.Floor.P99MS)
			}
			rows = append(rows,
				[]string{sk.Sink, "daemon " + itoa(st.Rate) + "/s", i64(st.Pgbench.Processed), itoa(st.Received), i64(st.Lost), itoa(st.Duplicates),
					f2(st.P50MS), f2(st.P99MS), f2(st.P999MS), f2(st.MaxMS), ratio},
				[]string{sk.Sink, "floor " + itoa(st.Rate) + "/s", itoa(st.Floor.Sent), itoa(st.Floor.Received), i64(st.Floor.Lost), itoa(st.Floor.Duplicates),
					f2(st.Floor.P50MS), f2(st.Floor.P99MS), f2(st.Floor.P999MS), f2(st.Floor.MaxMS), "-"})
			t.addUsage(fmt.Sprintf("sinks-%s-%d", sk.Sink, st.Rate), st.Usage)
		}
		if b := sk.Bulk; b != nil {
			keys := "-"
			if b.KeysSeconds > 0 {
				keys = f3(b.KeysSeconds)
			}
			confirmed := "not in " + confirmWait.String()
			if b.ConfirmedSeconds > 0 {
				confirmed = f3(b.ConfirmedSeconds)
			}
			bulk = append(bulk, []string{sk.Sink, itoa(b.Rows), f3(b.UpdateSeconds), f3(b.DaemonSeconds), keys, confirmed, itoa(b.Messages), itoa(b.Duplicates), itoa(b.Lost),
				f3(b.FloorSeconds), itoa(b.FloorMessages), itoa(b.FloorLost), f2(b.Ratio), f1(sk.PeakRSSMB)})
			t.addUsage("sinks-"+sk.Sink+"-bulk", b.Usage)
		}
	}
	var servers strings.Builder
	for _, sk := range rep.Sinks {
		fmt.Fprintf(&servers, "\n  %s: %s", sk.Sink, sk.Server)
	}
	t.section("SINKS STEADY: pgbench -R rate, single-row UPDATEs, "+rep.Options.SinksDuration+", read by the daemon and received from the sink by the suite's\n"+
		"  subscriber (nats/jetstream: a core subscription of cache.invalidate.shard.>; cluster: PSUBSCRIBE on one node); latency = receive\n"+
		"  time - commit_time; floor = a bare client (nats.go publisher, JetStream async publishes with a message id, go-redis ClusterClient\n"+
		"  pipelining UNLINK then PUBLISH) sending the same number of messages of the same size at the same rate, stamped when sent\n"+
		"  (it has no PostgreSQL in its path); the daemon also deletes from the single Redis on the NATS sinks"+servers.String(), rows)
	t.section("SINKS BULK: one transaction UPDATEs every row with id <= rows/100 (INVALIDATOR_MAX_KEYS_PER_TXN=1000000: one message per row);\n"+
		"  messages = distinct ones (by channel), dup = received again (until confirmed); confirmed_s = until the slot's confirmed position\n"+
		"  passed the commit (the daemon confirms once the sink acknowledged the whole transaction; waited for up to "+confirmWait.String()+" more);\n"+
		"  daemon_s = COMMIT returned to the subscriber having every message and the daemon having confirmed (cluster: and every preloaded\n"+
		"  key gone, keys_s);\n"+
		"  floor_s = the bare client's first send to its subscriber having every message and the client every ack (cluster: the same keys cached again and\n"+
		"  deleted, parts of 16,384 rows); daemon_peak_RSS = the highest of the sink's daemon runs", bulk)
}

// scale writes the scale runs.
func (t *table) scale(rep *report) {
	if len(rep.Scale) == 0 {
		return
	}
	rows := [][]string{{"unrelated_keys", "redis_MB", "truncate_s", "streamed_s", "streamed_slot", "bulk_floor_s", "bulk_daemon_s", "bulk_floor/daemon", "bulk_messages", "bulk_wide_msgs"}}
	for _, r := range rep.Scale {
		rows = append(rows, []string{i64(r.UnrelatedKeys), f0(r.RedisMemoryMB), f3(r.TruncateSeconds), f3(r.StreamedSeconds), r.StreamedSlot.String(),
			f3(r.Bulk.FloorSeconds), f3(r.Bulk.DaemonSeconds), f2(r.Bulk.Ratio), itoa(r.Bulk.Messages), itoa(r.Bulk.WideMessages)})
		t.addUsage(r.Bulk.Name, r.Bulk.Usage)
	}
	t.section(fmt.Sprintf("SCALE: the wide form with unrelated keys in Redis (DEBUG POPULATE), seconds from COMMIT to the last cached key deleted, 1 run each:\n"+
		"  truncate = TRUNCATE scale_items (%d keys cached; all-'*' wide form, scanned); streamed = UPDATE of %d rows streamed by PostgreSQL\n"+
		"  (logical_decoding_work_mem=64kB for the daemon) past a key bound of %d (wide form per tenant, scanned); bulk = the %d-row bulk with\n"+
		"  the default bound (exact keys past it, ADR 27: should not grow with the keyspace)", scaleItemKeys, streamedPerTenant*tenants, streamedMaxKeys, rep.Options.BulkRows), rows)
}

// namespace writes the namespace runs.
func (t *table) namespace(rep *report) {
	if len(rep.Namespace) == 0 {
		return
	}
	rows := [][]string{{"unrelated_keys", "wide_form", "truncates", "commit_to_incr_p50/max_ms", "commit_to_message_p50/max_ms", "SCAN/truncate", "INCR/truncate"}}
	for _, n := range rep.Namespace {
		incr := "-"
		if n.Form == "namespace" {
			incr = f2(n.IncrP50MS) + " / " + f2(n.IncrMaxMS)
		}
		rows = append(rows, []string{itoa(n.Keys), n.Form, itoa(n.Samples), incr, f2(n.MessageP50MS) + " / " + f2(n.MessageMaxMS), f1(n.ScanCalls), f1(n.IncrCalls)})
	}
	t.section("NAMESPACE: TRUNCATE of a rule's table, one at a time, on a Redis of its own holding that many unrelated keys (DEBUG POPULATE);\n"+
		"  wide form namespace = one INCR of the rule's version key, scan = SCAN MATCH + UNLINK of the whole keyspace; times from commit_time\n"+
		"  to the keyspace notification of the INCR and to the invalidation message (published once the wide form is applied)", rows)
}

// targets writes the targets met or missed.
func (t *table) targets(rep *report) {
	if len(rep.Targets) == 0 {
		return
	}
	rows := [][]string{{"target", "want", "got", "result"}}
	for _, tg := range rep.Targets {
		res := "met"
		if !tg.Met {
			res = "MISSED"
		}
		rows = append(rows, []string{tg.What, tg.Want, strings.TrimSpace(f3(tg.Got) + " " + tg.Unit), res})
	}
	t.section("TARGETS", rows)
}

// resources writes RESOURCES, a row per workload that ran.
func (t *table) resources(rep *report) {
	if len(t.usage) == 0 {
		return
	}
	rows := append([][]string{{"workload", "window_s", "daemon_peak_RSS_MB", "daemon_CPU_s", "walsender_CPU_s", "redis_CPU_s", "suite_CPU_s",
		"runq_wait_s(daemon/walsender)", "ctx_switches(daemon/walsender)", "host_busy_%", "other_CPU_s"}}, t.usage...)
	t.section(fmt.Sprintf("RESOURCES: daemon restarted per workload (peak RSS = VmHWM since its start); CPU = utime+stime over the window\n"+
		"  (bulk/huge: BEGIN to done; steady/unthrottled: pgbench start to drained); runq_wait = time the daemon's threads\n"+
		"  (summed) and its walsender were ready to run but waiting for a CPU, and how often they were switched out; host_busy = all %d CPUs;\n"+
		"  other = CPU used by processes outside the suite (its servers, daemon, pgbench included): others' work skews every figure", rep.Machine.CPUs), rows)
}

// ninesText is m's nines, or ">log10(checked)" when nothing was stale.
func ninesText(m consistencyMode) string {
	switch {
	case m.Nines != nil:
		return f2(*m.Nines)
	case m.Checked == 0:
		return "-"
	}
	return ">" + f2(math.Log10(float64(m.Checked)))
}

// voidsText prints why m's loads were not stored.
func voidsText(m consistencyMode) string {
	v := m.Voids
	switch {
	case v == nil:
		return "-"
	case m.Mode == modeLocalGen:
		return "any_inval " + i64(v.AnyInvalidation)
	case m.Mode == modeFiller:
		return "lease_lost " + i64(v.LeaseLost) + ", unleased " + i64(v.NotLeased)
	}
	return "key/pattern/resync " + i64(v.ByKey) + "/" + i64(v.ByPattern) + "/" + i64(v.ByResync)
}

// bucket prints a histogram bucket bound in ms (-1: beyond the last one).
func bucket(ms float64) string {
	if ms < 0 {
		return "inf"
	}
	return strconv.FormatFloat(ms, 'g', 3, 64)
}

func itoa(n int) string   { return fmt.Sprint(n) }
func i64(n int64) string  { return fmt.Sprint(n) }
func f0(v float64) string { return fmt.Sprintf("%.0f", v) }
func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func f3(v float64) string { return fmt.Sprintf("%.3f", v) }
