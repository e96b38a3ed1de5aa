package main

import (
	"context"
	"fmt"
	"github.com/jackc/pglogrepl"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// sqlTimeout bounds one statement of the suite's own (the huge UPDATE
// included).
const sqlTimeout = 10 * time.Minute

// queryConn runs sql (simple protocol, several statements allowed) on conn
// and returns the rows of the last result as text; NULL becomes "".
func queryConn(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	ctx, cancel := context.WithTimeout(ctx, sqlTimeout)
	defer cancel()
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", abbrev(sql), err)
	}
	var rows [][]string
	if len(results) > 0 {
		for _, r := range results[len(results)-1].Rows {
			row := make([]string, len(r))
			for i, v := range r {
				row[i] = string(v)
			}
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// query runs sql on a new connection to url.
func query(ctx context.Context, url, sql string) ([][]string, error) {
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return queryConn(ctx, conn, sql)
}

// queryValue runs sql and returns the first column of its only row.
func queryValue(ctx context.Context, url, sql string) (string, error) {
	rows, err := query(ctx, url, sql)
	if err != nil {
		return "", err
	}
	if len(rows) != 1 || len(rows[0]) < 1 {
		return "", fmt.Errorf("%s: got %d rows, want 1", abbrev(sql), len(rows))
	}
	return rows[0][0], nil
}

// currentLSN returns pg_current_wal_lsn().
func currentLSN(ctx context.Context, url string) (uint64, error) {
	v, err := queryValue(ctx, url, "SELECT pg_current_wal_lsn()")
	if err != nil {
		return 0, err
	}
	return parseLSN(v)
}

// parseLSN parses PostgreSQL's "X/Y" notation.
func parseLSN(s string) (uint64, error) {
	lsn, err := pglogrepl.ParseLSN(s)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q: %w", s, err)
	}
	return uint64(lsn), nil
}

func abbrev(sql string) string {
	sql = strings.Join(strings.Fields(sql), " ")
	if len(sql) > 80 {
		return sql[:77] + "..."
	}
	return sql
}
