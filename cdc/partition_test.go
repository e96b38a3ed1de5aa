package cdc_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/internal/testsrv"
)

// TestPublicationCoverage checks what covers a rule table: its own
// membership, a partition ancestor's, its schema's, FOR ALL TABLES; and
// that a partitioned member is covered although pg_publication_tables
// lists only its partitions.
func TestPublicationCoverage(t *testing.T) {
	pg := testsrv.StartPostgres(t)
	url := pg.CreateDatabase(t, "coverage")
	pg.Exec(t, "coverage", `
		CREATE TABLE events(tenant_id text, id int, PRIMARY KEY (tenant_id, id)) PARTITION BY LIST (tenant_id);
		CREATE TABLE events_a PARTITION OF events FOR VALUES IN ('a') PARTITION BY RANGE (id);
		CREATE TABLE events_a1 PARTITION OF events_a FOR VALUES FROM (0) TO (10);
		CREATE TABLE plain(id int PRIMARY KEY);
		CREATE SCHEMA other;
		CREATE TABLE other.t(id int PRIMARY KEY);
		CREATE PUBLICATION parent FOR TABLE events;
		CREATE PUBLICATION via_root FOR TABLE events WITH (publish_via_partition_root = true);
		CREATE PUBLICATION in_schema FOR TABLES IN SCHEMA other;
		CREATE PUBLICATION everything FOR ALL TABLES;`)
	ctx := context.Background()
	conn, err := pgconn.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(ctx) })
	tables := []string{"public.events", "public.events_a", "public.events_a1", "public.plain", "other.t", "public.nosuch"}
	for _, tc := range []struct {
		pub     string
		via     []string // per table
		viaRoot bool
	}{
		{"parent", []string{"public.events", "public.events", "public.events", "", "", ""}, false},
		{"via_root", []string{"public.events", "public.events", "public.events", "", "", ""}, true},
		{"in_schema", []string{"", "", "", "", "other.t", ""}, false},
		{"everything", []string{"public.events", "public.events_a", "public.events_a1", "public.plain", "other.t", ""}, false},
		{"missing", []string{"", "", "", "", "", ""}, false},
	} {
		t.Run(tc.pub, func(t *testing.T) {
			cov, err := cdc.PublicationCoverage(ctx, conn, tc.pub, tables)
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range cov {
				if c.Via != tc.via[i] || c.ViaRoot != tc.viaRoot {
					t.Errorf("%s: Via %q ViaRoot %v, want %q %v", c.Table, c.Via, c.ViaRoot, tc.via[i], tc.viaRoot)
				}
			}
			if !cov[0].Partitioned || !slices.Equal(cov[0].Partitions, []string{"public.events_a", "public.events_a1"}) {
				t.Errorf("events: Partitioned %v, Partitions %q", cov[0].Partitioned, cov[0].Partitions)
			}
			if !slices.Equal(cov[2].Ancestors, []string{"public.events_a", "public.events"}) {
				t.Errorf("events_a1: Ancestors %q", cov[2].Ancestors)
			}
			if cov[5].OID != 0 || cov[3].OID == 0 {
				t.Errorf("OIDs: nosuch %d, plain %d", cov[5].OID, cov[3].OID)
			}
		})
	}
	missing, err := cdc.PublicationMissing(ctx, conn, "parent", tables)
	if err != nil || !slices.Equal(missing, []string{"public.plain", "other.t", "public.nosuch"}) {
		t.Errorf("PublicationMissing = %q, %v", missing, err)
	}
}
