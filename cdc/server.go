package cdc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// MinServerMajor is the oldest PostgreSQL major version the stream
// supports: 14 added streaming of in-progress transactions to pgoutput
// (proto_version 2), logical decoding messages in pgoutput and the
// wal_status the slot checks read.
const MinServerMajor = 14

// FailoverMinMajor is the first PostgreSQL major version with failover
// slots (a logical slot that a physical standby keeps in step).
const FailoverMinMajor = 17

// ErrUnsupported reports a server that cannot do what the configuration
// asks: older than MinServerMajor, or failover slots demanded before
// FailoverMinMajor. Retrying cannot mend it; it is a configuration error.
var ErrUnsupported = errors.New("unsupported by this PostgreSQL server")

// ServerMajor returns the connected server's major version, from
// server_version_num when the server reports it at connection start, from
// server_version ("15.18 (Debian 15.18-0+deb12u1)") otherwise.
func ServerMajor(conn *pgconn.PgConn) (int, error) {
	if raw := conn.ParameterStatus("server_version_num"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil {
			return 0, fmt.Errorf("parse server_version_num %q: %w", raw, err)
		}
		return n / 10000, nil
	}
	v := conn.ParameterStatus("server_version")
	if n := serverMajor(v); n > 0 {
		return n, nil
	}
	return 0, fmt.Errorf("cannot tell the server's version from server_version %q", v)
}

// CheckServer returns the server's major version, or an error wrapping
// ErrUnsupported when it is older than MinServerMajor.
func CheckServer(conn *pgconn.PgConn) (int, error) {
	major, err := ServerMajor(conn)
	if err != nil {
		return 0, err
	}
	if major < MinServerMajor {
		return major, fmt.Errorf("%w: PostgreSQL %s is older than %d; invalidator needs PostgreSQL %d or later (streaming of large transactions, logical messages, wal_status)",
			ErrUnsupported, conn.ParameterStatus("server_version"), MinServerMajor, MinServerMajor)
	}
	return major, nil
}

// FailoverSlot says whether the slot is to be a failover slot on a server
// of major version, for INVALIDATOR_SLOT_FAILOVER mode: "auto" (or "")
// from FailoverMinMajor on, "false" never, "true" always, an error wrapping
// ErrUnsupported on an older server.
func FailoverSlot(mode string, major int) (bool, error) {
	switch mode {
	case "false":
		return false, nil
	case "true":
		if major < FailoverMinMajor {
			return false, fmt.Errorf("%w: INVALIDATOR_SLOT_FAILOVER=true needs PostgreSQL %d or later (failover slots), the server is %d",
				ErrUnsupported, FailoverMinMajor, major)
		}
		return true, nil
	default:
		return major >= FailoverMinMajor, nil
	}
}

// EnsureSlotMode is EnsureSlot with the failover decision taken for
// INVALIDATOR_SLOT_FAILOVER mode on the connected server (see FailoverSlot
// and CheckServer). It reports whether a created slot is a failover slot.
func EnsureSlotMode(ctx context.Context, conn *pgconn.PgConn, slot, mode string) (created, failover bool, err error) {
	major, err := CheckServer(conn)
	if err != nil {
		return false, false, err
	}
	if failover, err = FailoverSlot(mode, major); err != nil {
		return false, false, err
	}
	created, err = EnsureSlot(ctx, conn, slot, failover)
	return created, failover, err
}

// FailoverState is what the connected server says about failover slots.
type FailoverState struct {
	// InRecovery says the server is a standby.
	InRecovery bool
	// Standbys is the number of physical standbys streaming from it.
	Standbys int
	// StandbySlots are the physical slots in synchronized_standby_slots:
	// a failover slot's changes reach logical clients only once these
	// standbys have them.
	StandbySlots []string
	// SyncingSlots is how many of StandbySlots a standby streams through.
	SyncingSlots int
}

// Failover reads FailoverState (PostgreSQL 17+).
func Failover(ctx context.Context, conn *pgconn.PgConn) (FailoverState, error) {
	rows, err := query(ctx, conn, `SELECT pg_is_in_recovery()::text,
		(SELECT count(*) FROM pg_catalog.pg_stat_replication r WHERE NOT EXISTS (
		  SELECT 1 FROM pg_catalog.pg_replication_slots s WHERE s.active_pid = r.pid AND s.slot_type = 'logical'))::text,
		current_setting('synchronized_standby_slots'),
		(SELECT count(*) FROM pg_catalog.pg_replication_slots
		  WHERE slot_type = 'physical' AND active
		    AND slot_name = ANY (string_to_array(replace(current_setting('synchronized_standby_slots'), ' ', ''), ',')))::text`)
	if err != nil {
		return FailoverState{}, fmt.Errorf("read failover state: %w", err)
	}
	if len(rows) != 1 || len(rows[0]) != 4 {
		return FailoverState{}, errors.New("read failover state: unexpected result")
	}
	r := rows[0]
	st := FailoverState{InRecovery: string(r[0]) == "true"}
	_, _ = fmt.Sscan(string(r[1]), &st.Standbys)
	_, _ = fmt.Sscan(string(r[3]), &st.SyncingSlots)
	for _, s := range strings.Split(string(r[2]), ",") {
		if s = strings.TrimSpace(s); s != "" {
			st.StandbySlots = append(st.StandbySlots, s)
		}
	}
	return st, nil
}
