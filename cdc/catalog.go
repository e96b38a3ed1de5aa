package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoSuchTable reports a rule table that does not exist in the database.
var ErrNoSuchTable = errors.New("no such table")

// QuoteIdent quotes an SQL identifier.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// QuoteLiteral quotes an SQL string literal (standard_conforming_strings on).
func QuoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// QuoteTable quotes "schema.table" as "schema"."table".
func QuoteTable(qualified string) string {
	schema, table, ok := strings.Cut(qualified, ".")
	if !ok {
		return QuoteIdent("public") + "." + QuoteIdent(qualified)
	}
	return QuoteIdent(schema) + "." + QuoteIdent(table)
}

// query runs one SQL statement and returns its rows as text; NULL is nil.
// CloseConn closes conn within 2s, also once ctx has ended: a server gone
// silent must not hold up whoever closes it.
func CloseConn(ctx context.Context, conn *pgconn.PgConn) {
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = conn.Close(closeCtx)
}

func query(ctx context.Context, conn *pgconn.PgConn, sql string) ([][][]byte, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(results) == 0 {
		return nil, nil
	}
	return results[len(results)-1].Rows, nil
}

// queryRow returns the first row of the last result of sql, or nil when
// there is none; what names the query in its error.
func queryRow(ctx context.Context, conn *pgconn.PgConn, what, sql string) ([][]byte, error) {
	rows, err := query(ctx, conn, sql)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return rows[0], nil
}

// tableRow is queryRow for a query of one table's catalog row, with
// ErrNoSuchTable when there is none.
func tableRow(ctx context.Context, conn *pgconn.PgConn, what, table, sql string) ([][]byte, error) {
	r, err := queryRow(ctx, conn, what+" "+table, sql)
	if err == nil && r == nil {
		err = fmt.Errorf("%s: %w", table, ErrNoSuchTable)
	}
	return r, err
}

// commaList splits a comma-separated list, none when it is empty.
func commaList(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), ",")
}

// TableColumns returns the live columns of a table in order, or
// ErrNoSuchTable.
func TableColumns(ctx context.Context, conn *pgconn.PgConn, table string) ([]string, error) {
	schema, name, _ := strings.Cut(table, ".")
	rows, err := query(ctx, conn, `SELECT a.attname FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = `+QuoteLiteral(schema)+` AND c.relname = `+QuoteLiteral(name)+`
		  AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: %w", table, ErrNoSuchTable)
	}
	cols := make([]string, len(rows))
	for i, r := range rows {
		cols[i] = string(r[0])
	}
	return cols, nil
}

// SlotState is what pg_replication_slots says of a slot.
type SlotState struct {
	Exists            bool
	Plugin            string
	Database          string
	Active            bool
	ActivePID         int
	ConfirmedFlushLSN LSN
	RestartLSN        LSN
	WALStatus         string
	CurrentLSN        LSN
	// Failover says a standby with sync_replication_slots keeps the slot
	// in step (PostgreSQL 17+); Synced says this copy is such a standby's.
	Failover, Synced bool
}

// LagBytes is how far the slot's confirmed position trails the server.
func (s SlotState) LagBytes() int64 {
	if !s.Exists || s.CurrentLSN < s.ConfirmedFlushLSN {
		return 0
	}
	return int64(s.CurrentLSN - s.ConfirmedFlushLSN)
}

// Slot reads the state of a replication slot.
func Slot(ctx context.Context, conn *pgconn.PgConn, slot string) (SlotState, error) {
	r, err := queryRow(ctx, conn, fmt.Sprintf("read slot %q", slot), `SELECT s.plugin, coalesce(s.database, ''), s.active,
		coalesce(s.active_pid, 0)::text, coalesce(s.confirmed_flush_lsn::text, '0/0'),
		coalesce(s.restart_lsn::text, '0/0'), coalesce(s.wal_status, ''),
		CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text,
		coalesce(to_jsonb(s)->>'failover', 'false'), coalesce(to_jsonb(s)->>'synced', 'false')
		FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = `+QuoteLiteral(slot))
	if err != nil || r == nil {
		return SlotState{}, err
	}
	st := SlotState{Exists: true, Plugin: string(r[0]), Database: string(r[1]), Active: string(r[2]) == "t", WALStatus: string(r[6]),
		Failover: string(r[8]) == "true", Synced: string(r[9]) == "true"}
	_, _ = fmt.Sscan(string(r[3]), &st.ActivePID)
	var perr error
	if st.ConfirmedFlushLSN, perr = parseLSN(r[4]); perr != nil {
		return st, perr
	}
	if st.RestartLSN, perr = parseLSN(r[5]); perr != nil {
		return st, perr
	}
	if st.CurrentLSN, perr = parseLSN(r[7]); perr != nil {
		return st, perr
	}
	return st, nil
}

func parseLSN(b []byte) (LSN, error) {
	lsn, err := pglogrepl.ParseLSN(string(b))
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", b, err)
	}
	return lsn, nil
}

// EnsurePublication creates the publication for tables when it is missing,
// and adds any of tables it lacks. When flushSlot is set, the tables added
// and a flush request for them to that slot's stream (RequestFlush) commit
// in one transaction: what was committed to them before was not published.
// It returns what it did, for the log.
func EnsurePublication(ctx context.Context, conn *pgconn.PgConn, pub string, tables []string, flushSlot string) (created bool, added []string, err error) {
	rows, err := query(ctx, conn, `SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = `+QuoteLiteral(pub))
	if err != nil {
		return false, nil, fmt.Errorf("read publication %q: %w", pub, err)
	}
	if len(rows) == 0 {
		quoted := make([]string, len(tables))
		for i, t := range tables {
			quoted[i] = QuoteTable(t)
		}
		if _, err := query(ctx, conn, "CREATE PUBLICATION "+QuoteIdent(pub)+" FOR TABLE "+strings.Join(quoted, ", ")); err != nil {
			return false, nil, fmt.Errorf("create publication %q: %w", pub, err)
		}
		return true, nil, nil
	}
	if string(rows[0][0]) == "t" {
		return false, nil, nil
	}
	missing, err := PublicationMissing(ctx, conn, pub, tables)
	if err != nil || len(missing) == 0 {
		return false, nil, err
	}
	// one statement string: one transaction, the flush request with the adds
	stmts := make([]string, 0, len(missing)+1)
	for _, t := range missing {
		stmts = append(stmts, "ALTER PUBLICATION "+QuoteIdent(pub)+" ADD TABLE "+QuoteTable(t))
	}
	if flushSlot != "" {
		stmts = append(stmts, flushRequestSQL(flushSlot, missing))
	}
	if _, err := query(ctx, conn, strings.Join(stmts, "; ")); err != nil {
		return false, nil, fmt.Errorf("add %s to publication %q: %w", strings.Join(missing, ", "), pub, err)
	}
	return false, missing, nil
}

// PublicationMissing returns the tables the publication does not cover
// (see PublicationCoverage: a partitioned table is covered by its own
// membership, a partition also by an ancestor's). A missing publication
// covers nothing.
func PublicationMissing(ctx context.Context, conn *pgconn.PgConn, pub string, tables []string) ([]string, error) {
	cov, err := PublicationCoverage(ctx, conn, pub, tables)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, c := range cov {
		if !c.Covered() {
			missing = append(missing, c.Table)
		}
	}
	return missing, nil
}

// DropSlot drops a replication slot if it exists.
func DropSlot(ctx context.Context, conn *pgconn.PgConn, slot string) error {
	_, err := query(ctx, conn, "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots WHERE slot_name = "+QuoteLiteral(slot))
	if err != nil {
		return fmt.Errorf("drop slot %q: %w", slot, err)
	}
	return nil
}

// EnsureSlot creates the logical replication slot (pgoutput) when missing.
//
// A new slot is a failover slot (PostgreSQL 17+) when failover is true. An
// existing one is left as it is (SlotState.Failover tells), as a slot in
// use cannot be altered.
func EnsureSlot(ctx context.Context, conn *pgconn.PgConn, slot string, failover bool) (created bool, err error) {
	st, err := Slot(ctx, conn, slot)
	if err != nil {
		return false, err
	}
	if st.Exists {
		if st.Plugin != "pgoutput" {
			return false, fmt.Errorf("slot %q uses plugin %q, not pgoutput: drop it or choose another INVALIDATOR_SLOT", slot, st.Plugin)
		}
		return false, nil
	}
	create := "SELECT pg_catalog.pg_create_logical_replication_slot(" + QuoteLiteral(slot) + ", 'pgoutput')"
	if failover {
		// slot_name, plugin, temporary, twophase, failover
		create = "SELECT pg_catalog.pg_create_logical_replication_slot(" + QuoteLiteral(slot) + ", 'pgoutput', false, false, true)"
	}
	if _, err := query(ctx, conn, create); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" { // created meanwhile by another replica
			return false, nil
		}
		return false, fmt.Errorf("create slot %q: %w", slot, err)
	}
	return true, nil
}

// Identity is a table's REPLICA IDENTITY: what an UPDATE or DELETE carries
// of the old row.
type Identity struct {
	Kind    byte     // 'd' default (primary key), 'i' index, 'f' full, 'n' nothing
	Columns []string // the columns the old row carries (all of them for 'f')
}

// Describe returns the setting as SQL says it.
func (id Identity) Describe() string {
	switch id.Kind {
	case 'f':
		return "FULL"
	case 'n':
		return "NOTHING"
	case 'i':
		return "USING INDEX"
	}
	return "DEFAULT"
}

// TableIdentity reads a table's replica identity and its columns.
func TableIdentity(ctx context.Context, conn *pgconn.PgConn, table string) (Identity, error) {
	schema, name, _ := strings.Cut(table, ".")
	r, err := tableRow(ctx, conn, "replica identity of", table, `SELECT c.relreplident::text, coalesce((
			SELECT string_agg(a.attname, ',' ORDER BY a.attnum)
			FROM pg_catalog.pg_index i
			JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = c.oid AND (
				(c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))
		), '')
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = `+QuoteLiteral(schema)+` AND c.relname = `+QuoteLiteral(name))
	if err != nil {
		return Identity{}, err
	}
	id := Identity{Kind: r[0][0]}
	if id.Kind == 'f' {
		id.Columns, err = TableColumns(ctx, conn, table)
		return id, err
	}
	id.Columns = commaList(r[1])
	return id, nil
}

// Setting returns a server setting (SHOW name).
func Setting(ctx context.Context, conn *pgconn.PgConn, name string) (string, error) {
	r, err := queryRow(ctx, conn, "setting "+name, "SELECT pg_catalog.current_setting("+QuoteLiteral(name)+")")
	if err != nil {
		return "", err
	}
	if r == nil {
		return "", fmt.Errorf("setting %s: no value", name)
	}
	return string(r[0]), nil
}

// PublicationExists reports whether the publication exists.
func PublicationExists(ctx context.Context, conn *pgconn.PgConn, pub string) (bool, error) {
	rows, err := query(ctx, conn, `SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = `+QuoteLiteral(pub))
	if err != nil {
		return false, fmt.Errorf("read publication %q: %w", pub, err)
	}
	return len(rows) > 0, nil
}

// Server names the database a daemon serves: the cluster's system
// identifier (kept by a physical standby promoted in its place, new after
// pg_upgrade or a fresh initdb) and the database's name.
type Server struct {
	SystemID string
	Database string
}

// ServerOf returns the system identifier and database of conn.
func ServerOf(ctx context.Context, conn *pgconn.PgConn) (Server, error) {
	r, err := queryRow(ctx, conn, "read the system identifier", "SELECT system_identifier::text, pg_catalog.current_database() FROM pg_catalog.pg_control_system()")
	if err != nil {
		return Server{}, err
	}
	if r == nil {
		return Server{}, errors.New("read the system identifier: no row")
	}
	return Server{SystemID: string(r[0]), Database: string(r[1])}, nil
}

// TableInfo is what the catalog says of a rule table besides its columns
// and replica identity: whether logical replication can stream it at all,
// and which of its columns it does not send.
type TableInfo struct {
	Kind        byte     // relkind: 'r' table, 'p' partitioned, 'v' view, 'm' materialized view, 'f' foreign
	Persistence byte     // relpersistence: 'p' permanent, 'u' unlogged, 't' temporary
	Generated   []string // generated columns, which pgoutput sends only on PostgreSQL 18 with publish_generated_columns
}

// ReadTableInfo reads a table's kind, persistence and generated columns,
// or returns ErrNoSuchTable.
func ReadTableInfo(ctx context.Context, conn *pgconn.PgConn, table string) (TableInfo, error) {
	schema, name, _ := strings.Cut(table, ".")
	r, err := tableRow(ctx, conn, "kind of", table, `SELECT c.relkind::text, c.relpersistence::text, coalesce((
			SELECT string_agg(a.attname, ',' ORDER BY a.attnum) FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''
		), '')
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = `+QuoteLiteral(schema)+` AND c.relname = `+QuoteLiteral(name))
	if err != nil {
		return TableInfo{}, err
	}
	return TableInfo{Kind: r[0][0], Persistence: r[1][0], Generated: commaList(r[2])}, nil
}

// Publication is what an existing publication sends.
type Publication struct {
	Exists                           bool
	AllTables                        bool
	Insert, Update, Delete, Truncate bool
	GeneratedColumns                 bool                      // publish_generated_columns = stored (PostgreSQL 18)
	Tables                           map[string]PublishedTable // every table it covers, by schema.table
}

// PublishedTable is what a publication sends of one table.
type PublishedTable struct {
	RowFilter string   // the row filter's expression, "" for none (PostgreSQL 15)
	Columns   []string // the columns it sends; nil when the server cannot say (before 15)
}

// ReadPublication reads what a publication sends and of which tables
// (FOR ALL TABLES and FOR TABLES IN SCHEMA included).
func ReadPublication(ctx context.Context, conn *pgconn.PgConn, pub string) (Publication, error) {
	versionNum, err := Setting(ctx, conn, "server_version_num")
	if err != nil {
		return Publication{}, err
	}
	var version int
	_, _ = fmt.Sscan(versionNum, &version)
	gencols := "false"
	if version >= 180000 {
		gencols = "p.pubgencols = 's'"
	}
	r, err := queryRow(ctx, conn, fmt.Sprintf("read publication %q", pub), `SELECT p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, `+gencols+`
		FROM pg_catalog.pg_publication p WHERE p.pubname = `+QuoteLiteral(pub))
	if err != nil || r == nil {
		return Publication{}, err
	}
	p := Publication{Exists: true, AllTables: string(r[0]) == "t",
		Insert: string(r[1]) == "t", Update: string(r[2]) == "t", Delete: string(r[3]) == "t", Truncate: string(r[4]) == "t",
		GeneratedColumns: string(r[5]) == "t", Tables: map[string]PublishedTable{}}
	detail := "'', NULL"
	if version >= 150000 {
		detail = "coalesce(t.rowfilter, ''), array_to_string(t.attnames, E'\\n')"
	}
	rows, err := query(ctx, conn, `SELECT t.schemaname || '.' || t.tablename, `+detail+`
		FROM pg_catalog.pg_publication_tables t WHERE t.pubname = `+QuoteLiteral(pub))
	if err != nil {
		return Publication{}, fmt.Errorf("read tables of publication %q: %w", pub, err)
	}
	for _, r := range rows {
		t := PublishedTable{RowFilter: string(r[1])}
		if r[2] != nil {
			t.Columns = strings.Split(string(r[2]), "\n")
		}
		p.Tables[string(r[0])] = t
	}
	return p, nil
}

// Database returns the name of the database conn is connected to.
func Database(ctx context.Context, conn *pgconn.PgConn) (string, error) {
	r, err := queryRow(ctx, conn, "current database", "SELECT pg_catalog.current_database()")
	if err != nil {
		return "", err
	}
	if r == nil {
		return "", errors.New("current database: no row")
	}
	return string(r[0]), nil
}
