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
Exit status: 0 no problems (warnings allowed), 1 problems, 2 bad usage or
configuration.`

// finding is one line of check's report.
type finding struct {
	Check   string `json:"check"`
	Status  string `json:"status"` // ok, warn, problem
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
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
		fs.BoolVar(&c.CreateSlot, "create-slot", c.CreateSlot, "run may create the slot and publication (env "+config.Var("CREATE_SLOT")+")")
	}, (*config.Config).Validate)
	if done {
		return code
	}
	r := &report{}
	r.add("ok", "rules", fmt.Sprintf("%s: %d rules on %d tables", s.cfg.Rules, len(s.rules.Rules), len(s.rules.Tables())), "")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	checkPostgres(ctx, s.cfg, s.rules, r)
	checkRedis(ctx, s.cfg, r)

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
	if problems > 0 {
		return exitProblems
	}
	return exitOK
}

func checkPostgres(ctx context.Context, cfg *config.Config, rules *router.Rules, r *report) {
	conn, err := pgconn.Connect(ctx, cfg.PostgresURL)
	if err != nil {
		r.add("problem", "postgres", "cannot connect: "+redactErr(err, cfg), "check "+config.Var("POSTGRES_URL")+" and that the server accepts connections from here")
		return
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	version := conn.ParameterStatus("server_version")
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

	tables := rules.Tables()
	for _, t := range tables {
		checkTable(ctx, conn, rules, t, r)
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
			r.add("ok", "publication", pubCheck+" covers every rule table", "")
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
	}
	checkPartitions(ctx, conn, cfg, tables, r)
	checkSlot(ctx, conn, cfg, r)
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
func checkTable(ctx context.Context, conn *pgconn.PgConn, rules *router.Rules, table string, r *report) {
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
	fix := "ALTER TABLE " + cdc.QuoteTable(table) + " REPLICA IDENTITY FULL;"
	ok := true
	for _, rule := range rules.Rules {
		if rule.Table != table {
			continue
		}
		fires := func(op string) bool { return slices.Contains(rule.On, op) }
		if id.Kind == 'n' && (fires("update") || fires("delete")) {
			r.add("problem", name, fmt.Sprintf("REPLICA IDENTITY NOTHING: no old row is sent, so rule %q cannot render what an UPDATE or DELETE invalidates", rule.Name), fix)
			ok = false
			continue
		}
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
	own := []string{publisher.JournalKey(rules.ChannelPrefix), slotMarkerKey(rules.ChannelPrefix, cfg.Slot)}
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

func checkSlot(ctx context.Context, conn *pgconn.PgConn, cfg *config.Config, r *report) {
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
	case st.Plugin != "pgoutput":
		r.add("problem", "slot", fmt.Sprintf("%s uses plugin %s, not pgoutput", name, st.Plugin), "SELECT pg_drop_replication_slot('"+cfg.Slot+"'); then invalidator setup")
		return
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
}

func checkRedis(ctx context.Context, cfg *config.Config, r *report) {
	rdb, err := newRedis(cfg)
	if err != nil {
		r.add("problem", "redis", err.Error(), "")
		return
	}
	defer func() { _ = rdb.Close() }()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		r.add("problem", "redis", "cannot reach: "+redactErr(err, cfg), "check "+config.Var("REDIS_URL"))
		return
	}
	r.add("ok", "redis", "reachable", "")
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
