package testsrv

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

// TestPostgresVersions starts every supported major and checks it is that
// major and decodes logically with pgoutput.
func TestPostgresVersions(t *testing.T) {
	for _, v := range PostgresVersions {
		t.Run(fmt.Sprintf("pg%d", v), func(t *testing.T) {
			p := StartPostgresWith(t, PostgresOptions{Version: v})
			if p.Version() != v {
				t.Fatalf("Version() = %d, want %d", p.Version(), v)
			}
			num, err := strconv.Atoi(p.Query(t, "postgres", "SHOW server_version_num")[0][0])
			if err != nil {
				t.Fatal(err)
			}
			if num/10000 != v {
				t.Fatalf("server_version_num = %d, want major %d", num, v)
			}
			p.Exec(t, "postgres", "CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION pub FOR TABLE t")
			p.Exec(t, "postgres", "SELECT pg_create_logical_replication_slot('s', 'pgoutput')")
			p.Exec(t, "postgres", "INSERT INTO t VALUES (1)")
			rows := p.Query(t, "postgres", "SELECT count(*) FROM pg_logical_slot_get_binary_changes('s', NULL, NULL, 'proto_version', '1', 'publication_names', 'pub')")
			if rows[0][0] == "0" {
				t.Fatal("pgoutput decoded no change of the insert")
			}
		})
	}
}

// TestPostgresStandby makes a standby of a 17 server and checks it replays
// the primary's writes and becomes writable once promoted.
func TestPostgresStandby(t *testing.T) {
	p := StartPostgresWith(t, PostgresOptions{Version: 17})
	p.Exec(t, "postgres", "SELECT pg_create_physical_replication_slot('standby')")
	s := p.StartStandby(t, "standby", "sync_replication_slots=on")
	if s.Version() != 17 || s.Port == p.Port {
		t.Fatalf("standby version %d port %d, primary port %d", s.Version(), s.Port, p.Port)
	}
	if got := s.Query(t, "postgres", "SELECT pg_is_in_recovery()")[0][0]; got != "t" {
		t.Fatalf("standby pg_is_in_recovery = %q", got)
	}
	p.Exec(t, "postgres", "CREATE TABLE t (id int); INSERT INTO t VALUES (42)")
	waitFor(t, func() bool {
		rows := s.Query(t, "postgres", "SELECT count(*) FROM pg_class WHERE relname = 't'")
		return rows[0][0] == "1"
	})
	if got := s.Query(t, "postgres", "SELECT id FROM t")[0][0]; got != "42" {
		t.Fatalf("standby row = %q", got)
	}
	s.Exec(t, "postgres", "SELECT pg_promote()")
	s.Exec(t, "postgres", "INSERT INTO t VALUES (43)")
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
