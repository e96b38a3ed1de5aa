package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/internal/backoff"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

const replayHelp = `invalidator replay (--since D | --from-lsn X [--to-lsn Y] | --table T [--where SQL] | --tenant ID) [--dry-run]

Re-invalidates after an incident:
  --since 15m, --from-lsn/--to-lsn   re-apply journal entries (deletes and messages, verbatim)
  --table T [--where-column C --where-value V]... [--where "SQL"]
                                     read T's current rows (one consistent snapshot, in batches)
                                     and invalidate every key they render; each column/value
                                     pair keeps rows whose C equals V (a bound parameter).
                                     --where is a filter on T's columns: constants, operators,
                                     casts and a few side-effect-free functions, nothing else;
                                     it runs read-only, under --statement-timeout, and as --role
                                     when given (a role that may only SELECT the rule tables)
  --tenant ID                        flush the wide form of every rule that uses --tenant-column
  --dry-run                          print what would be deleted and published; change nothing
Progress goes to stderr (a line on a terminal, periodic lines otherwise);
a summary is printed at the end. Replayed work is not written to the journal.`

type replayFlags struct {
	since          time.Duration
	fromLSN, toLSN string
	table, where   string
	whereCols      stringList
	whereVals      stringList
	stmtTimeout    time.Duration
	role           string
	tenant, column string
	batch          int
	dryRun         bool
}

func replayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var f replayFlags
	s, code, done := load("replay", replayHelp, args, stdout, stderr, func(_ *config.Config, fs *flag.FlagSet) {
		fs.DurationVar(&f.since, "since", 0, "re-apply journal entries committed within this duration")
		fs.StringVar(&f.fromLSN, "from-lsn", "", "re-apply journal entries from this commit LSN")
		fs.StringVar(&f.toLSN, "to-lsn", "", "… up to this commit LSN (inclusive)")
		fs.StringVar(&f.table, "table", "", "invalidate every key the table's current rows render")
		fs.StringVar(&f.where, "where", "", "with --table: a filter on the table's columns (SQL, checked)")
		fs.Var(&f.whereCols, "where-column", "with --table: keep rows whose column … (repeatable, with --where-value)")
		fs.Var(&f.whereVals, "where-value", "… equals this value (its text form)")
		fs.DurationVar(&f.stmtTimeout, "statement-timeout", 30*time.Second, "with --table: statement_timeout of each statement of the read")
		fs.StringVar(&f.role, "role", "", "with --table: SET ROLE to this role for the read (one that may only SELECT)")
		fs.StringVar(&f.tenant, "tenant", "", "flush every rule's wide form for this tenant")
		fs.StringVar(&f.column, "tenant-column", "tenant_id", "with --tenant: the column that holds the tenant")
		fs.IntVar(&f.batch, "batch", 1000, "rows or entries per batch")
		fs.BoolVar(&f.dryRun, "dry-run", false, "print what would be done; change nothing")
	}, (*config.Config).ValidateConnections)
	if done {
		return code
	}
	if err := f.validate(); err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator replay: %v\n", err)
		return exitUsage
	}
	rdb, err := reachRedis(ctx, s.cfg)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator replay: %v\n", err)
		if errors.As(err, new(*config.Error)) {
			return exitUsage
		}
		return exitProblems
	}
	defer func() { _ = rdb.Close() }()
	r := &replayer{
		cfg: s.cfg, rules: s.rules, rt: router.New(s.rules, 0, nil), rdb: rdb,
		pub:    publisher.New(rdb, publisherConfig(s.cfg, s.rules)),
		dryRun: f.dryRun, out: stdout, progress: newProgress(stderr),
	}
	defer func() { _ = r.pub.Close() }()
	switch {
	case f.table != "":
		err = r.table(ctx, f)
	case f.tenant != "":
		err = r.tenant(ctx, f.column, f.tenant)
	default:
		err = r.journal(ctx, f)
	}
	r.progress.done()
	if err != nil {
		// no summary: it would read as the whole of what there was to do
		_, _ = fmt.Fprintf(stderr, "invalidator replay: %s\n", redactErr(err, s.cfg))
		if r.units > 0 && !f.dryRun {
			_, _ = fmt.Fprintf(stderr, "invalidator replay: stopped after %d %s (%d keys deleted, %d messages published); run it again\n", r.units, r.unitName, r.deleted, r.published)
		}
		var usage *usageError
		if errors.As(err, &usage) {
			return exitUsage
		}
		return exitProblems
	}
	if r.foreign > 0 {
		_, _ = fmt.Fprintf(stderr, "invalidator replay: left out %d journal entries of other servers or databases sharing this Redis\n", r.foreign)
	}
	if f.dryRun {
		_, _ = fmt.Fprintf(stdout, "dry run: %d %s: would delete %d keys (existing now), would publish %d messages\n", r.units, r.unitName, r.deleted, r.published)
	} else {
		_, _ = fmt.Fprintf(stdout, "replayed %d %s: %d keys deleted, %d messages published\n", r.units, r.unitName, r.deleted, r.published)
	}
	return exitOK
}

// usageError is a replay argument found wrong only after looking at the data.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func (f *replayFlags) validate() error {
	modes := 0
	for _, set := range []bool{f.since > 0 || f.fromLSN != "" || f.toLSN != "", f.table != "", f.tenant != ""} {
		if set {
			modes++
		}
	}
	switch {
	case modes != 1:
		return errors.New("choose one of --since, --from-lsn, --table or --tenant")
	case f.since > 0 && (f.fromLSN != "" || f.toLSN != ""):
		return errors.New("--since and --from-lsn/--to-lsn exclude each other")
	case f.toLSN != "" && f.fromLSN == "":
		return errors.New("--to-lsn needs --from-lsn")
	case (f.where != "" || len(f.whereCols) > 0 || len(f.whereVals) > 0 || f.role != "") && f.table == "":
		return errors.New("--where, --where-column, --where-value and --role need --table")
	case len(f.whereCols) != len(f.whereVals):
		return errors.New("give one --where-value for each --where-column")
	case f.stmtTimeout <= 0:
		return errors.New("--statement-timeout must be positive")
	case f.batch <= 0:
		return errors.New("--batch must be positive")
	}
	for _, l := range []string{f.fromLSN, f.toLSN} {
		if l != "" {
			if _, err := parseLSNText(l); err != nil {
				return err
			}
		}
	}
	if f.where != "" {
		return checkPredicate(f.where, nil) // the columns are checked once known
	}
	return nil
}

func parseLSNText(s string) (cdc.LSN, error) {
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil || strings.Count(s, "/") != 1 {
		return 0, fmt.Errorf("LSN %q: expected the form 0/1A2B3C4", s)
	}
	return cdc.LSN(lsn), nil
}

// replayer applies (or, dry, prints) replayed invalidations.
type replayer struct {
	cfg      *config.Config
	rules    *router.Rules
	rt       *router.Router
	rdb      redis.UniversalClient
	pub      *publisher.Publisher
	dryRun   bool
	out      io.Writer
	progress *progress

	units              int
	unitName           string
	deleted, published int64
	foreign            int // journal entries of another server or database
}

// server returns the system identifier and database replay serves.
func (r *replayer) server(ctx context.Context) (cdc.Server, error) {
	conn, err := pgconn.Connect(ctx, r.cfg.PostgresURL)
	if err != nil {
		return cdc.Server{}, fmt.Errorf("connect to PostgreSQL (to tell this server's journal entries from others'): %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	return cdc.ServerOf(ctx, conn)
}

// apply applies one batch, retrying a few times on Redis errors.
func (r *replayer) apply(ctx context.Context, batch []publisher.Applied) error {
	if r.dryRun {
		return r.print(ctx, batch)
	}
	var err error
	b := backoff.Backoff{Min: 200 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 0; attempt < 5; attempt++ {
		var st publisher.Stats
		st, err = r.pub.Apply(ctx, batch)
		if err == nil {
			r.deleted += st.KeysDeleted
			r.published += int64(st.Messages)
			return nil
		}
		if werr := b.Wait(ctx); werr != nil {
			return werr
		}
	}
	return err
}

// print says what apply would do; patterns report how many keys match now.
func (r *replayer) print(ctx context.Context, batch []publisher.Applied) error {
	var buf []byte
	for _, c := range batch {
		res := c.Txn.Result()
		for _, k := range res.Keys {
			n, err := r.rdb.Exists(ctx, k).Result()
			if err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			r.deleted += n
			_, _ = fmt.Fprintf(r.out, "would delete  %s\n", k)
		}
		for _, p := range res.Patterns {
			n, err := countMatching(ctx, r.rdb, p)
			if err != nil {
				return err
			}
			r.deleted += n
			_, _ = fmt.Fprintf(r.out, "would delete  keys matching %s (%d now)\n", p, n)
		}
		for _, ns := range res.Namespaces {
			_, _ = fmt.Fprintf(r.out, "would bump    namespace %s\n", ns)
		}
		for i := range res.NumMessages() {
			m := res.Message(i)
			buf = publisher.AppendMessage(buf[:0], &m, c.CommitLSN, c.Xid, c.CommitTime)
			_, _ = fmt.Fprintf(r.out, "would publish %s%s %s\n", r.rules.ChannelPrefix, m.Channel, buf)
			r.published++
		}
	}
	return nil
}

func countMatching(ctx context.Context, rdb redis.UniversalClient, pattern string) (int64, error) {
	var n int64
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return n, fmt.Errorf("redis scan: %w", err)
		}
		n += int64(len(keys))
		if next == 0 {
			return n, nil
		}
		cursor = next
	}
}

// journal re-applies journal entries selected by time or LSN.
func (r *replayer) journal(ctx context.Context, f replayFlags) error {
	r.unitName = "journal entries"
	key := publisher.JournalKey(r.rules.ChannelPrefix)
	// a Redis may hold the journals of several servers: only this one's
	// entries are replayed (and those of versions that did not say)
	srv, err := r.server(ctx)
	if err != nil {
		return err
	}
	start := "-"
	if f.since > 0 {
		start = strconv.FormatInt(time.Now().Add(-f.since).UnixMilli(), 10)
	}
	var from, to cdc.LSN
	if f.fromLSN != "" {
		from, _ = parseLSNText(f.fromLSN)
	}
	to = ^cdc.LSN(0)
	if f.toLSN != "" {
		to, _ = parseLSNText(f.toLSN)
	}
	for {
		entries, err := r.rdb.XRangeN(ctx, key, start, "+", int64(f.batch)).Result()
		if err != nil {
			return fmt.Errorf("read journal %s: %w", key, err)
		}
		if len(entries) == 0 {
			return nil
		}
		var batch []publisher.Applied
		for _, e := range entries {
			if id := field(e, "system_id"); id != "" && (id != srv.SystemID || field(e, "database") != srv.Database) {
				r.foreign++
				continue
			}
			c, err := r.fromJournal(e)
			if err != nil {
				return fmt.Errorf("journal entry %s: %w", e.ID, err)
			}
			if c.CommitLSN < from {
				continue
			}
			if c.CommitLSN > to {
				if err := r.apply(ctx, batch); err != nil {
					return err
				}
				r.units += len(batch)
				return nil
			}
			batch = append(batch, c)
		}
		if len(batch) > 0 {
			if err := r.apply(ctx, batch); err != nil {
				return err
			}
			r.units += len(batch)
			r.progress.report(r.units, r.unitName, r.deleted)
		}
		start = "(" + entries[len(entries)-1].ID
	}
}

// fromJournal rebuilds a transaction's invalidations from its journal entry.
func (r *replayer) fromJournal(e redis.XMessage) (publisher.Applied, error) {
	var c publisher.Applied
	var err error
	if c.CommitLSN, err = parseLSNText(field(e, "lsn")); err != nil {
		return c, err
	}
	xid, _ := strconv.ParseUint(field(e, "xid"), 10, 32)
	c.Xid = uint32(xid)
	if c.CommitTime, err = time.Parse(publisher.TimeLayout, field(e, "commit_time")); err != nil {
		return c, fmt.Errorf("commit_time: %w", err)
	}
	res := &router.Result{}
	if err := json.Unmarshal([]byte(field(e, "keys")), &res.Keys); err != nil {
		return c, fmt.Errorf("keys: %w", err)
	}
	if err := json.Unmarshal([]byte(field(e, "patterns")), &res.Patterns); err != nil {
		return c, fmt.Errorf("patterns: %w", err)
	}
	// entries of transactions that bumped no namespace have no such field
	if ns := field(e, "namespaces"); ns != "" {
		if err := json.Unmarshal([]byte(ns), &res.Namespaces); err != nil {
			return c, fmt.Errorf("namespaces: %w", err)
		}
	}
	var msgs []struct {
		Op         string   `json:"op"`
		Table      string   `json:"table"`
		Rule       string   `json:"rule"`
		Keys       []string `json:"keys"`
		Patterns   []string `json:"patterns"`
		Namespaces []string `json:"namespaces"`
	}
	if m := field(e, "messages"); m != "" {
		if err := json.Unmarshal([]byte(m), &msgs); err != nil {
			return c, fmt.Errorf("messages: %w", err)
		}
	}
	var channels []string
	_ = json.Unmarshal([]byte(field(e, "channels")), &channels)
	if len(msgs) == 0 && len(channels) > 0 {
		// a huge transaction's entry lists its channels only
		for _, ch := range channels {
			res.AddMessage(router.Message{Channel: ch, Op: cdc.OpUpdate})
		}
	}
	for i, m := range msgs {
		op, _ := cdc.ParseOp(m.Op)
		ch := ""
		if i < len(channels) {
			ch = channels[i]
		}
		res.AddMessage(router.Message{Channel: ch, Op: op, Table: m.Table, Rule: m.Rule, Keys: m.Keys, Patterns: m.Patterns, Namespaces: m.Namespaces})
	}
	c.Txn = r.rt.Finished(res)
	return c, nil
}

// table reads the table's current rows in one snapshot and invalidates
// every key they render.
func (r *replayer) table(ctx context.Context, f replayFlags) error {
	r.unitName = "rows"
	table := f.table
	if !strings.Contains(table, ".") {
		table = "public." + table
	}
	routes, err := r.tableRoutes(ctx, table)
	if err != nil {
		return err
	}
	known := false
	for _, t := range r.rules.Tables() {
		known = known || t == table || slices.Contains(routes, t)
	}
	if !known {
		return &usageError{fmt.Sprintf("--table %s: no rule names this table", table)}
	}
	conn, err := reachPostgres(ctx, r.cfg)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	cols, err := cdc.TableColumns(ctx, conn, table)
	if err != nil {
		return err
	}
	where, params, err := rowFilter(f, cols)
	if err != nil {
		return err
	}
	return r.scan(ctx, conn, table, routes, cols, where, params, f)
}

// scan reads table's rows that match where (already checked) in one
// snapshot, in batches, and invalidates what they render.
func (r *replayer) scan(ctx context.Context, conn *pgconn.PgConn, table string, routes []string, cols []string, where string, params [][]byte, f replayFlags) error {
	relCols := make([]cdc.Column, len(cols))
	quoted := make([]string, len(cols))
	for i, c := range cols {
		relCols[i] = cdc.Column{Name: c}
		quoted[i] = cdc.QuoteIdent(c)
	}
	rel := cdc.NewRelation(table, relCols)
	rel.Routes = routes
	// the filter's names resolve to built-ins only, its strings are read
	// as the checker read them, no statement runs unbounded, and with a
	// role it cannot do more than that role may
	begin := "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL search_path = pg_catalog; " +
		"SET LOCAL standard_conforming_strings = on; SET LOCAL statement_timeout = " + strconv.FormatInt(f.stmtTimeout.Milliseconds(), 10)
	if f.role != "" {
		begin += "; SET LOCAL ROLE " + cdc.QuoteIdent(f.role)
	}
	if _, err := conn.Exec(ctx, begin).ReadAll(); err != nil {
		return fmt.Errorf("begin snapshot: %w", err)
	}
	sql := "DECLARE invalidator_replay NO SCROLL CURSOR FOR SELECT " + strings.Join(quoted, ", ") + " FROM " + cdc.QuoteTable(table)
	if where != "" {
		sql += " WHERE " + where
	}
	// the extended protocol takes exactly one statement
	if _, err := conn.ExecParams(ctx, sql, params, nil, nil, nil).Close(); err != nil {
		return fmt.Errorf("--where: %w", err)
	}
	fetch := "FETCH FORWARD " + strconv.Itoa(f.batch) + " FROM invalidator_replay"
	row := make(cdc.Tuple, len(cols))
	now := time.Now()
	for {
		results, err := conn.Exec(ctx, fetch).ReadAll()
		if err != nil {
			return fmt.Errorf("read %s: %w", table, err)
		}
		rows := results[0].Rows
		if len(rows) == 0 {
			break
		}
		txn := r.rt.NewReplayTxn()
		for _, vals := range rows {
			for i, v := range vals {
				if v == nil {
					row[i] = cdc.Datum{Kind: cdc.DatumNull}
				} else {
					row[i] = cdc.Datum{Kind: cdc.DatumText, Data: v}
				}
			}
			txn.Add(&cdc.Change{Op: cdc.OpUpdate, Rel: rel, New: row})
		}
		txn.Commit()
		if err := r.apply(ctx, []publisher.Applied{{Txn: txn, CommitTime: now}}); err != nil {
			return err
		}
		r.units += len(rows)
		r.progress.report(r.units, r.unitName, r.deleted)
	}
	_, err := conn.Exec(ctx, "COMMIT").ReadAll()
	return err
}

// rowFilter builds the WHERE clause of a table replay: the checked --where
// and one "column = $n" per --where-column, its value bound as text.
func rowFilter(f replayFlags, cols []string) (string, [][]byte, error) {
	var conds []string
	var params [][]byte
	if f.where != "" {
		if err := checkPredicate(f.where, cols); err != nil {
			return "", nil, &usageError{err.Error()}
		}
		conds = append(conds, "("+f.where+")")
	}
	for i, c := range f.whereCols {
		if !slices.Contains(cols, c) {
			return "", nil, &usageError{fmt.Sprintf("--where-column %s: not a column of %s", c, f.table)}
		}
		params = append(params, []byte(f.whereVals[i]))
		conds = append(conds, fmt.Sprintf("%s = $%d", cdc.QuoteIdent(c), len(params)))
	}
	return strings.Join(conds, " AND "), params, nil
}

// stringList is a flag that may be given several times.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// tenant flushes the wide form of every rule that uses the tenant column.
func (r *replayer) tenant(ctx context.Context, column, id string) error {
	r.unitName = "tenant flushes"
	res := r.rt.Wide(map[string]string{column: id}, cdc.OpTruncate)
	if res.Empty() {
		return &usageError{fmt.Sprintf("--tenant: no rule uses the column %q (see --tenant-column)", column)}
	}
	r.units = 1
	return r.apply(ctx, []publisher.Applied{{Txn: r.rt.Finished(res), CommitTime: time.Now()}})
}

// progress reports a long replay: a line rewritten in place on a terminal,
// a line every few seconds otherwise.
type progress struct {
	w        io.Writer
	terminal bool
	last     time.Time
	drawn    bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) report(n int, unit string, deleted int64) {
	every := 5 * time.Second
	if p.terminal {
		every = 200 * time.Millisecond
	}
	if time.Since(p.last) < every {
		return
	}
	p.last = time.Now()
	if p.terminal {
		_, _ = fmt.Fprintf(p.w, "\r%d %s, %d keys deleted…", n, unit, deleted)
		p.drawn = true
		return
	}
	_, _ = fmt.Fprintf(p.w, "%s progress: %d %s, %d keys deleted\n", time.Now().UTC().Format(time.RFC3339), n, unit, deleted)
}

func (p *progress) done() {
	if p.drawn {
		_, _ = fmt.Fprintln(p.w)
	}
}

// tableRoutes returns the tables whose rules a table's rows also render,
// as the stream finds them (ADR 15): a partition's ancestors, a
// partitioned table's partitions; none for a table that does not exist.
func (r *replayer) tableRoutes(ctx context.Context, table string) ([]string, error) {
	conn, err := pgconn.Connect(ctx, r.cfg.PostgresURL)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	return cdc.TableRoutes(ctx, conn, table)
}
