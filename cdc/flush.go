package cdc

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// flushPrefix is the prefix of the transactional logical decoding message
// that asks the stream of one slot to flush the wide form of the rules on
// some tables (ADR 16). Written in the transaction that adds the tables
// back to the publication, it is decoded in WAL order after everything
// committed before it, and the stream confirms it only once Redis applied
// the flush: a daemon that stops or crashes between the add and the flush
// still flushes after its restart.
const flushPrefix = "invalidator.flush"

// flushRequestSQL is the statement that writes a flush request for tables
// to the slot's stream; its content is the slot, then one table a line.
func flushRequestSQL(slot string, tables []string) string {
	return "SELECT pg_catalog.pg_logical_emit_message(true, " + QuoteLiteral(flushPrefix) + ", " +
		QuoteLiteral(slot+"\n"+strings.Join(tables, "\n")) + ")"
}

// RequestFlush commits a request to the slot's stream to flush the wide
// form of the rules on tables, for tables some of whose changes were not
// decoded. The stream applies it after every change committed before it.
func RequestFlush(ctx context.Context, conn *pgconn.PgConn, slot string, tables []string) error {
	if _, err := query(ctx, conn, flushRequestSQL(slot, tables)); err != nil {
		return fmt.Errorf("request a flush of %s: %w", strings.Join(tables, ", "), err)
	}
	return nil
}

// FlushRequest returns the tables a logical decoding message asks the
// slot's stream to flush, and whether it is such a request.
func FlushRequest(slot, prefix string, content []byte) ([]string, bool) {
	if prefix != flushPrefix {
		return nil, false
	}
	lines := strings.Split(string(content), "\n")
	if len(lines) < 2 || lines[0] != slot {
		return nil, false
	}
	return lines[1:], true
}
