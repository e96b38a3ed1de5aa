package cdc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

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
	rows, err := query(ctx, conn, `SELECT s.plugin, coalesce(s.database, ''), s.active,
		coalesce(s.active_pid, 0)::text, coalesce(s.confirmed_flush_lsn::text, '0/0'),
		coalesce(s.restart_lsn::text, '0/0'), coalesce(s.wal_status, ''),
		CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text
		FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = `+QuoteLiteral(slot))
	if err != nil {
		return SlotState{}, fmt.Errorf("read slot %q: %w", slot, err)
	}
	if len(rows) == 0 {
		return SlotState{}, nil
	}
	r := rows[0]
	st := SlotState{Exists: true, Plugin: string(r[0]), Database: string(r[1]), Active: string(r[2]) == "t", WALStatus: string(r[6])}
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
	var hi, lo uint32
	if _, err := fmt.Sscanf(string(b), "%X/%X", &hi, &lo); err != nil {
		return 0, fmt.Errorf("parse LSN %q: %w", b, err)
	}
	return LSN(uint64(hi)<<32 | uint64(lo)), nil
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
func EnsureSlot(ctx context.Context, conn *pgconn.PgConn, slot string) (created bool, err error) {
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
	if _, err := query(ctx, conn, "SELECT pg_catalog.pg_create_logical_replication_slot("+QuoteLiteral(slot)+", 'pgoutput')"); err != nil {
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
	rows, err := query(ctx, conn, `SELECT c.relreplident::text, coalesce((
			SELECT string_agg(a.attname, ',' ORDER BY a.attnum)
			FROM pg_catalog.pg_index i
			JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = c.oid AND (
				(c.relreplident = 'd' AND i.indisprimary) OR (c.relreplident = 'i' AND i.indisreplident))
		), '')
		FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = `+QuoteLiteral(schema)+` AND c.relname = `+QuoteLiteral(name))
	if err != nil {
		return Identity{}, fmt.Errorf("replica identity of %s: %w", table, err)
	}
	if len(rows) == 0 {
		return Identity{}, fmt.Errorf("%s: %w", table, ErrNoSuchTable)
	}
	id := Identity{Kind: rows[0][0][0]}
	if id.Kind == 'f' {
		id.Columns, err = TableColumns(ctx, conn, table)
		return id, err
	}
	if s := string(rows[0][1]); s != "" {
		id.Columns = strings.Split(s, ",")
	}
	return id, nil
}

// Setting returns a server setting (SHOW name).
func Setting(ctx context.Context, conn *pgconn.PgConn, name string) (string, error) {
	rows, err := query(ctx, conn, "SELECT pg_catalog.current_setting("+QuoteLiteral(name)+")")
	if err != nil {
		return "", fmt.Errorf("setting %s: %w", name, err)
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("setting %s: no value", name)
	}
	return string(rows[0][0]), nil
}

// PublicationExists reports whether the publication exists.
func PublicationExists(ctx context.Context, conn *pgconn.PgConn, pub string) (bool, error) {
	rows, err := query(ctx, conn, `SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = `+QuoteLiteral(pub))
	if err != nil {
		return false, fmt.Errorf("read publication %q: %w", pub, err)
	}
	return len(rows) > 0, nil
}
