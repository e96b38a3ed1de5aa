package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
	"github.com/cachewire/invalidator/subscriber"
)

const checkHelp = `invalidator check [--json]

Validates the environment and the rules file. When PostgreSQL and Redis are
reachable it also checks wal_level, that the publication covers every rule
table, that every column a rule uses exists, that each table's REPLICA
IDENTITY carries the old values the rules render (with the ALTER TABLE to
run when it does not), how the changes of partitioned tables and of
partitions reach their rules, the slot's state and retained WAL, and Redis.
It takes every flag run takes, so it can check the command line run will get.
Exit status: 0 no problems (warnings allowed), 1 problems, 2 bad usage or
configuration.`

// finding is one line of check's report.
type finding struct {
	Check   string `json:"check"`
	Status  string `json:"status"` // ok, warn, problem
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
	// startable: a problem run starts with anyway (it logs a warning),
	// because no key stays stale, only the work grows.
	startable bool
}

type report struct {
	findings []finding
}

func (r *report) add(status, check, msg, fix string) {
	r.findings = append(r.findings, finding{Check: check, Status: status, Message: msg, Fix: fix})
}

func (r *report) count(status string) int {
	n := 0
	for _, f := range r.findings {
		if f.Status == status {
			n++
		}
	}
	return n
}

func checkCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	s, code, done := load("check", checkHelp, args, stdout, stderr, func(c *config.Config, fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
		c.BindRunFlags(fs) // check validates what run would start with
	}, (*config.Config).Validate)
	if done {
		return code
	}
	r := &report{}
	r.add("ok", "rules", fmt.Sprintf("%s: %d rules on %d tables", s.cfg.Rules, len(s.rules.Rules), len(s.rules.Tables())), "")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	unsupported := checkPostgres(ctx, s.cfg, s.rules, r)
	checkRedis(ctx, s.cfg, s.rules, r)

	problems, warnings := r.count("problem"), r.count("warn")
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(map[string]any{"ok": problems == 0, "problems": problems, "warnings": warnings, "checks": r.findings})
	} else {
		for _, f := range r.findings {
			_, _ = fmt.Fprintf(stdout, "%-8s %-22s %s\n", f.Status, f.Check, f.Message)
			if f.Fix != "" {
				_, _ = fmt.Fprintf(stdout, "%-8s %-22s fix: %s\n", "", "", f.Fix)
			}
		}
		_, _ = fmt.Fprintf(stdout, "%d problems, %d warnings\n", problems, warnings)
	}
	if unsupported {
		return exitUsage
	}
	if problems > 0 {
		return exitProblems
	}
	return exitOK
}

// checkPostgres reports on the server, the tables and the slot; it returns
// true when the server cannot run this configuration at all (too old, or
// failover slots demanded of a server without them): a configuration error.
func checkPostgres(ctx context.Context, cfg *config.Config, rules *router.Rules, r *report) (unsupported bool) {
	conn, err := pgconn.Connect(ctx, cfg.PostgresURL)
	if err != nil {
		r.add("problem", "postgres", "cannot connect: "+oneLine(redactErr(err, cfg)), "check "+config.Var("POSTGRES_URL")+" (--postgres-url) and that the server accepts connections from here")
		return false
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	version := conn.ParameterStatus("server_version")
	major, err := cdc.CheckServer(conn)
	if err != nil {
		r.add("problem", "postgres", err.Error(), "upgrade PostgreSQL to 14 or later")
		return errors.Is(err, cdc.ErrUnsupported)
	}
	if _, err := cdc.FailoverSlot(cfg.SlotFailover, major); err != nil {
		r.add("problem", "slot failover", err.Error(), "set "+config.Var("SLOT_FAILOVER")+"=auto or false")
		return true
	}
	wal, err := cdc.Setting(ctx, conn, "wal_level")
	switch {
	case err != nil:
		r.add("problem", "postgres", err.Error(), "")
	case wal != "logical":
		r.add("problem", "wal_level", fmt.Sprintf("wal_level is %s, logical replication needs logical", wal),
			"ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL")
	default:
		r.add("ok", "postgres", fmt.Sprintf("PostgreSQL %s, wal_level=logical", version), "")
	}

	pub, err := cdc.ReadPublication(ctx, conn, cfg.Publication)
	if err != nil {
		r.add("problem", "publication", err.Error(), "")
	}
	tables := rules.Tables()
	for _, t := range tables {
		checkTable(ctx, conn, rules, t, cfg.Publication, pub, r)
	}
	checkOwnKeys(cfg, rules, r)

	exists, err := cdc.PublicationExists(ctx, conn, cfg.Publication)
	pubCheck := fmt.Sprintf("publication %q", cfg.Publication)
	switch {
	case err != nil:
		r.add("problem", "publication", err.Error(), "")
	case !exists && cfg.CreateSlot:
		r.add("warn", "publication", pubCheck+" does not exist yet; run will create it ("+config.Var("CREATE_SLOT")+"=true)", "invalidator setup")
	case !exists:
		r.add("problem", "publication", pubCheck+" does not exist", "invalidator setup")
	default:
		missing, err := cdc.PublicationMissing(ctx, conn, cfg.Publication, tables)
		switch {
		case err != nil:
			r.add("problem", "publication", err.Error(), "")
		case len(missing) == 0:
		default:
			quoted := make([]string, len(missing))
			for i, m := range missing {
				quoted[i] = cdc.QuoteTable(m)
			}
			status := "problem"
			if cfg.CreateSlot {
				status = "warn" // run adds them
			}
			r.add(status, "publication", fmt.Sprintf("%s does not cover %s", pubCheck, strings.Join(missing, ", ")),
				"ALTER PUBLICATION "+cdc.QuoteIdent(cfg.Publication)+" ADD TABLE "+strings.Join(quoted, ", ")+";")
		}
		found := publicationFindings(cfg, rules, pub, tables)
		r.findings = append(r.findings, found...)
		if err == nil && len(missing) == 0 && len(found) == 0 {
			r.add("ok", "publication", pubCheck+" covers every rule table and publishes every operation, row and column the rules use", "")
		}
	}
	checkPartitions(ctx, conn, cfg, tables, r)
	checkSlot(ctx, conn, cfg, major, r)
	return false
}

// checkPartitions says how the changes of partitioned rule tables and of
// partitions reach their rules (ADR 15).
func checkPartitions(ctx context.Context, conn *pgconn.PgConn, cfg *config.Config, tables []string, r *report) {
	cov, err := cdc.PublicationCoverage(ctx, conn, cfg.Publication, tables)
	if err != nil {
		r.add("problem", "partitions", err.Error(), "")
		return
	}
	for _, c := range cov {
		if d := c.Describe(); d != "" {
			r.add("ok", "table "+c.Table, d, "")
		}
	}
}

// checkTable checks columns and replica identity for one rule table.
func checkTable(ctx context.Context, conn *pgconn.PgConn, rules *router.Rules, table, pubName string, pub cdc.Publication, r *report) {
	name := "table " + table
	cols, err := cdc.TableColumns(ctx, conn, table)
	if errors.Is(err, cdc.ErrNoSuchTable) {
		r.add("problem", name, "does not exist", "fix the rule's table, or create the table")
		return
	}
	if err != nil {
		r.add("problem", name, err.Error(), "")
		return
	}
	if err := rules.CheckColumns(table, cols); err != nil {
		r.add("problem", name, err.Error(), "fix the rule's template")
		return
	}
	id, err := cdc.TableIdentity(ctx, conn, table)
	if err != nil {
		r.add("problem", name, err.Error(), "")
		return
	}
	info, err := cdc.ReadTableInfo(ctx, conn, table)
	if err != nil {
		r.add("problem", name, err.Error(), "")
		return
	}
	found := tableFindings(rules, table, id, info, pubName, pub)
	r.findings = append(r.findings, found...)
	fix := "ALTER TABLE " + cdc.QuoteTable(table) + " REPLICA IDENTITY FULL;"
	ok := len(found) == 0
	for _, rule := range rules.Rules {
		if rule.Table != table || id.Kind != 'f' && len(id.Columns) == 0 {
			continue // no replica identity: a problem above
		}
		fires := func(op string) bool { return slices.Contains(rule.On, op) }
		var missing []string
		for _, c := range rule.TemplateColumns() {
			if !slices.Contains(id.Columns, c) {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 && (fires("update") || fires("delete")) {
			r.add("warn", name, fmt.Sprintf("REPLICA IDENTITY %s does not carry %s, which rule %q renders: a DELETE skips those keys and an UPDATE that changes them does not invalidate the old place",
				id.Describe(), strings.Join(missing, ", "), rule.Name), fix)
			ok = false
		}
		var unjudged []string
		for _, c := range rule.Changed {
			if !slices.Contains(id.Columns, c) {
				unjudged = append(unjudged, c)
			}
		}
		if len(unjudged) > 0 && id.Kind != 'f' && fires("update") {
			r.add("warn", name, fmt.Sprintf("rule %q: changed: [%s] cannot be judged without the old row, so the rule fires on every UPDATE",
				rule.Name, strings.Join(unjudged, ", ")), fix)
			ok = false
		}
	}
	if ok {
		r.add("ok", name, fmt.Sprintf("columns exist; REPLICA IDENTITY %s carries what the rules render", id.Describe()), "")
	}
}

// checkOwnKeys warns when a rule's wide form (TRUNCATE, past the key bound,
// resync) would also delete the daemon's own keys in Redis: the journal and
// the slot marker.
func checkOwnKeys(cfg *config.Config, rules *router.Rules, r *report) {
	// the marker's server part is digits and a database name: a sample stands for it
	sample := cdc.Server{SystemID: "7000000000000000000", Database: "db"}
	own := []string{publisher.JournalKey(rules.ChannelPrefix), slotMarkerKey(rules.ChannelPrefix, sample, cfg.Slot)}
	flush := router.New(rules, 0, nil).Wide(nil, cdc.OpTruncate)
	for _, p := range flush.Patterns {
		for _, k := range own {
			if subscriber.MatchPattern(p, k) {
				r.add("warn", "keyspace", fmt.Sprintf("the wide form %s would also delete the daemon's key %s", p, k),
					"give the rules a key_prefix, or a channel_prefix outside the cache's key space")
			}
		}
	}
}

func checkSlot(ctx context.Context, conn *pgconn.PgConn, cfg *config.Config, major int, r *report) {
	name := fmt.Sprintf("slot %q", cfg.Slot)
	st, err := cdc.Slot(ctx, conn, cfg.Slot)
	switch {
	case err != nil:
		r.add("problem", "slot", err.Error(), "")
		return
	case !st.Exists && cfg.CreateSlot:
		r.add("warn", "slot", name+" does not exist yet; run will create it", "invalidator setup")
		return
	case !st.Exists:
		r.add("problem", "slot", name+" does not exist", "invalidator setup")
		return
	}
	db, err := cdc.Database(ctx, conn)
	if err != nil {
		r.add("problem", "slot", err.Error(), "")
		return
	}
	if f := slotFinding(cfg, st, db); f != nil {
		r.findings = append(r.findings, *f)
		return
	}
	switch {
	case st.WALStatus == "lost":
		r.add("problem", "slot", name+" is lost (its WAL was removed): invalidations were missed", "restart run with "+config.Var("ON_SLOT_LOST")+"=resync")
		return
	}
	active := "inactive"
	if st.Active {
		active = fmt.Sprintf("active (pid %d)", st.ActivePID)
	}
	msg := fmt.Sprintf("%s: %s, confirmed %s, lag %d bytes, wal_status %s", name, active, st.ConfirmedFlushLSN, st.LagBytes(), st.WALStatus)
	keep, _ := cdc.Setting(ctx, conn, "max_slot_wal_keep_size")
	switch {
	case st.WALStatus == "unreserved":
		r.add("problem", "slot", msg+"; retained WAL is past max_slot_wal_keep_size ("+keep+") and about to be removed", "make the daemon catch up, or raise max_slot_wal_keep_size")
	case st.WALStatus == "extended":
		r.add("warn", "slot", msg+"; retained WAL exceeds max_wal_size", "check that the daemon is running and keeping up")
	default:
		r.add("ok", "slot", msg+"; max_slot_wal_keep_size "+keep, "")
	}
	if major >= cdc.FailoverMinMajor {
		checkFailover(ctx, conn, cfg, st, r)
	}
}

// checkFailover reports whether the slot survives a failover (PostgreSQL
// 17+): a failover slot, physical standbys streaming through a slot named
// in synchronized_standby_slots, or, on a standby, a synchronised copy.
func checkFailover(ctx context.Context, conn *pgconn.PgConn, cfg *config.Config, st cdc.SlotState, r *report) {
	name := fmt.Sprintf("slot %q", cfg.Slot)
	if !st.Failover {
		r.add("warn", "slot failover", name+" is not a failover slot: a promoted standby will not have it, and a failover loses it",
			"drop it while the daemon is stopped and let run or setup recreate it ("+config.Var("SLOT_FAILOVER")+"=auto), or ALTER_REPLICATION_SLOT "+cfg.Slot+" (FAILOVER true) on a replication connection")
		return
	}
	fb, err := cdc.Failover(ctx, conn)
	if err != nil {
		r.add("problem", "slot failover", err.Error(), "")
		return
	}
	if fb.InRecovery {
		if st.Synced {
			r.add("ok", "slot failover", name+" is a failover slot synchronised on this standby", "")
		} else {
			r.add("warn", "slot failover", name+" on this standby is not synchronised from the primary", "set sync_replication_slots = on and hot_standby_feedback = on on the standby, and dbname in its primary_conninfo")
		}
		return
	}
	msg := fmt.Sprintf("%s is a failover slot; %d physical standbys streaming", name, fb.Standbys)
	if len(fb.StandbySlots) == 0 {
		r.add("warn", "slot failover", msg+"; synchronized_standby_slots is not set, so the daemon may confirm changes a standby has not received and a promoted standby re-sends or lacks them",
			"ALTER SYSTEM SET synchronized_standby_slots = '<physical slot of each standby>'; SELECT pg_reload_conf();")
		return
	}
	if fb.SyncingSlots == 0 {
		r.add("warn", "slot failover", msg+"; no standby streams through a slot of synchronized_standby_slots ("+strings.Join(fb.StandbySlots, ", ")+"): the daemon waits for it",
			"start the standby (primary_slot_name one of them, sync_replication_slots = on), or fix synchronized_standby_slots")
		return
	}
	r.add("ok", "slot failover", fmt.Sprintf("%s; %d of synchronized_standby_slots (%s) streaming", msg, fb.SyncingSlots, strings.Join(fb.StandbySlots, ", ")), "")
}

func checkRedis(ctx context.Context, cfg *config.Config, rules *router.Rules, r *report) {
	checkSentinel(ctx, cfg, r)
	rdb, err := newRedis(cfg)
	if err != nil {
		r.add("problem", "redis", err.Error(), "")
		return
	}
	defer func() { _ = rdb.Close() }()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = rdb.Ping(pctx).Err()
	if err == nil { // the daemon's own connection authenticates as go-redis does not
		pub := publisher.New(rdb, publisher.Config{Sentinel: sentinelOf(cfg)})
		err = pub.Connect(pctx)
		_ = pub.Close()
	}
	if err != nil {
		variable, flagName := config.Var("REDIS_URL"), "--redis-url"
		if len(cfg.RedisSentinelAddrs) > 0 {
			variable, flagName = config.Var("REDIS_SENTINEL_ADDRS"), "--redis-sentinel-addrs"
		}
		r.add("problem", "redis", "cannot reach: "+oneLine(redactErr(err, cfg)), "check "+variable+" ("+flagName+") and that Redis is running")
		return
	}
	r.add("ok", "redis", "reachable", "")
	checkReplicas(ctx, cfg, rdb, r)
	checkEviction(pctx, rdb, rules, r)
}

// checkEviction warns when rules have namespaces and Redis may evict keys
// without a TTL: an evicted version key loses the bumps it counted (ADR 28).
func checkEviction(ctx context.Context, rdb redis.UniversalClient, rules *router.Rules, r *report) {
	var named []string
	for _, rule := range rules.Rules {
		if rule.Namespace != nil {
			named = append(named, rule.Name)
		}
	}
	if len(named) == 0 {
		return
	}
	cfg, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return // CONFIG may be refused (managed Redis): nothing to tell
	}
	if policy := cfg["maxmemory-policy"]; strings.HasPrefix(policy, "allkeys-") {
		r.add("warn", "redis", fmt.Sprintf("maxmemory-policy %s may evict the version keys of rules with a namespace (%s)", policy, strings.Join(named, ", ")),
			"use noeviction or a volatile-* policy (version keys have no TTL, cached values should have one)")
	}
}

// redactErr renders an error without any secret of the configured URLs.
func redactErr(err error, cfg *config.Config) string {
	msg := err.Error()
	for _, raw := range []string{cfg.PostgresURL, cfg.RedisURL, cfg.NATSURL} {
		if raw != "" {
			msg = strings.ReplaceAll(msg, raw, config.RedactURL(raw))
		}
	}
	return msg
}
