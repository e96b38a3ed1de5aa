package cdc

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TableCoverage is what a publication does for one rule table (ADR 15).
type TableCoverage struct {
	Table string // schema.table, as the rules name it
	// OID is the table's pg_class oid, 0 when there is no such table. A
	// table dropped and created again has a new one.
	OID uint32
	// Partitioned: a partitioned table, whose rows live in its partitions.
	Partitioned bool
	// Partitions lists its partitions at every level, nearest first.
	Partitions []string
	// Ancestors lists, for a partition, the tables it is a partition of,
	// nearest first.
	Ancestors []string
	// Via is what publishes the table: the table itself, or the nearest of
	// its partition ancestors that is a member of the publication (the
	// table itself for FOR ALL TABLES or a publication of its schema);
	// empty when nothing does.
	Via string
	// ViaRoot: the publication sets publish_via_partition_root, so changes
	// of partitions arrive as the topmost published ancestor.
	ViaRoot bool
}

// Covered reports whether the publication sends the table's changes.
func (c TableCoverage) Covered() bool { return c.Via != "" }

// Describe says, for setup and check, how the changes of a partitioned
// table or of a partition reach the rules; it is empty for a plain table.
func (c TableCoverage) Describe() string {
	switch {
	case c.Partitioned && c.ViaRoot && c.Via != "":
		return fmt.Sprintf("%s is partitioned (partitions: %s); the publication publishes via the partition root, so their changes arrive as %s and go to the rules of %s and of every partition",
			c.Table, listOrNone(c.Partitions), c.Via, c.Via)
	case c.Partitioned:
		return fmt.Sprintf("%s is partitioned (partitions: %s); their changes, and those of partitions attached later, arrive as the partition and go to the rules of the partition and of its ancestors, %s included",
			c.Table, listOrNone(c.Partitions), c.Table)
	case len(c.Ancestors) > 0:
		through, as := "", c.Table
		if c.Via != "" && c.Via != c.Table {
			through = ", published through " + c.Via
		}
		if c.ViaRoot {
			as = "its topmost published ancestor"
		}
		return fmt.Sprintf("%s is a partition of %s%s: its changes arrive as %s and go to its rules and to those of its ancestors",
			c.Table, strings.Join(c.Ancestors, " of "), through, as)
	}
	return ""
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none yet"
	}
	return strings.Join(l, ", ")
}

// PublicationCoverage reads, for each table, whether the publication sends
// its changes: as a member itself, through a partition ancestor that is
// one, through its schema, or as FOR ALL TABLES. Unlike
// pg_publication_tables, which lists partitions and not the partitioned
// table, it answers for the table the rules name. A missing publication
// covers nothing.
func PublicationCoverage(ctx context.Context, conn *pgconn.PgConn, pub string, tables []string) ([]TableCoverage, error) {
	if len(tables) == 0 {
		return nil, nil
	}
	major := serverMajor(conn.ParameterStatus("server_version"))
	values := make([]string, len(tables))
	for i, t := range tables {
		schema, name := splitTable(t)
		values[i] = fmt.Sprintf("(%d, %s, %s)", i, QuoteLiteral(schema), QuoteLiteral(name))
	}
	// the table itself at level 0, then its ancestors nearest first
	lineage := "SELECT c.oid AS relid, 0::int8 AS level"
	partitions, ancestors := "''", "''"
	if major == 0 || major >= 12 {
		ancestors = `coalesce((SELECT string_agg(an.nspname || '.' || ac.relname, ',' ORDER BY a.level)
			FROM pg_catalog.pg_partition_ancestors(c.oid) WITH ORDINALITY AS a(relid, level)
			JOIN pg_catalog.pg_class ac ON ac.oid = a.relid JOIN pg_catalog.pg_namespace an ON an.oid = ac.relnamespace
			WHERE a.relid <> c.oid), '')`
		lineage += " UNION ALL SELECT a.relid, a.level FROM pg_catalog.pg_partition_ancestors(c.oid) WITH ORDINALITY AS a(relid, level)"
		partitions = `coalesce((SELECT string_agg(pn.nspname || '.' || pc.relname, ',' ORDER BY pt.level, pn.nspname, pc.relname)
			FROM pg_catalog.pg_partition_tree(c.oid) pt
			JOIN pg_catalog.pg_class pc ON pc.oid = pt.relid JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
			WHERE pt.relid <> c.oid), '')`
	}
	member := "EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel r JOIN p ON p.oid = r.prpubid WHERE r.prrelid = l.relid)"
	if major == 0 || major >= 15 {
		member += " OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication_namespace pn JOIN p ON p.oid = pn.pnpubid WHERE pn.pnnspid = lc.relnamespace)"
	}
	viaRoot := "false"
	if major == 0 || major >= 13 {
		viaRoot = "coalesce((SELECT pubviaroot FROM p), false)"
	}
	rows, err := query(ctx, conn, `WITH t(ord, nsp, rel) AS (VALUES `+strings.Join(values, ", ")+`),
		p AS (SELECT * FROM pg_catalog.pg_publication WHERE pubname = `+QuoteLiteral(pub)+`)
		SELECT coalesce(c.oid::int8, 0)::text, coalesce(c.relkind = 'p', false)::text, `+viaRoot+`::text,
			CASE WHEN c.oid IS NULL THEN ''
				WHEN coalesce((SELECT puballtables FROM p), false) THEN t.nsp || '.' || t.rel
				ELSE coalesce((SELECT ln.nspname || '.' || lc.relname FROM (`+lineage+`) l
					JOIN pg_catalog.pg_class lc ON lc.oid = l.relid JOIN pg_catalog.pg_namespace ln ON ln.oid = lc.relnamespace
					WHERE `+member+` ORDER BY l.level LIMIT 1), '') END,
			CASE WHEN c.relkind = 'p' THEN `+partitions+` ELSE '' END,
			CASE WHEN c.oid IS NULL THEN '' ELSE `+ancestors+` END
		FROM t LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = t.nsp
		LEFT JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.rel
		ORDER BY t.ord`)
	if err != nil {
		return nil, fmt.Errorf("read publication %q: %w", pub, err)
	}
	if len(rows) != len(tables) {
		return nil, fmt.Errorf("read publication %q: %d rows for %d tables", pub, len(rows), len(tables))
	}
	out := make([]TableCoverage, len(tables))
	for i, r := range rows {
		oid, err := strconv.ParseUint(string(r[0]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("read publication %q: oid of %s: %w", pub, tables[i], err)
		}
		out[i] = TableCoverage{Table: tables[i], OID: uint32(oid), Partitioned: string(r[1]) == "true",
			ViaRoot: string(r[2]) == "true", Via: string(r[3]), Partitions: commaList(r[4]), Ancestors: commaList(r[5])}
	}
	return out, nil
}

func splitTable(qualified string) (schema, name string) {
	schema, name, ok := strings.Cut(qualified, ".")
	if !ok {
		return "public", qualified
	}
	return schema, name
}

// RelationRoutes returns the other tables whose rules the changes of a
// relation concern (ADR 15): its partition ancestors, nearest first, and,
// when it is itself partitioned (its partitions' changes were published
// via the root), its partitions at every level. It is empty for a plain
// table, or one that no longer exists.
func RelationRoutes(ctx context.Context, conn *pgconn.PgConn, relID uint32) ([]string, error) {
	routes, err := routesOf(ctx, conn, strconv.FormatUint(uint64(relID), 10)+"::oid")
	if err != nil {
		return nil, fmt.Errorf("partitions of relation %d: %w", relID, err)
	}
	return routes, nil
}

// TableRoutes is RelationRoutes for a table named schema.table; it is
// empty for one that does not exist.
func TableRoutes(ctx context.Context, conn *pgconn.PgConn, table string) ([]string, error) {
	routes, err := routesOf(ctx, conn, "pg_catalog.to_regclass("+QuoteLiteral(QuoteTable(table))+")::oid")
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", table, err)
	}
	return routes, nil
}

// routesOf answers RelationRoutes for the relation whose oid the SQL
// expression id gives.
func routesOf(ctx context.Context, conn *pgconn.PgConn, id string) ([]string, error) {
	if major := serverMajor(conn.ParameterStatus("server_version")); major != 0 && major < 12 {
		return nil, nil
	}
	rows, err := query(ctx, conn, `SELECT n.nspname || '.' || c.relname FROM (
			SELECT a.relid, a.level FROM pg_catalog.pg_partition_ancestors(`+id+`) WITH ORDINALITY AS a(relid, level)
			UNION ALL
			SELECT t.relid, 1000 + t.level FROM pg_catalog.pg_partition_tree(`+id+`) t
			WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class WHERE oid = `+id+` AND relkind = 'p')
		) x JOIN pg_catalog.pg_class c ON c.oid = x.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE x.relid <> `+id+` ORDER BY x.level, 1`)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = string(r[0])
	}
	return out, nil
}

// routeLookup answers RelationRoutes for a stream on a connection of its
// own (the replication connection is busy streaming), opened when first
// needed and again after a failure.
//
// The lookup reads the catalog as it is now, not as it was when the
// changes being decoded were written: a partition detached (or dropped)
// while the stream lags would lose its ancestors' rules for changes made
// while it was attached. So the routes a relation was once found to have
// are kept, in seen, and added to every later answer: too many rules
// render its changes afterwards, never too few.
type routeLookup struct {
	url  string
	conn *pgconn.PgConn
	seen map[uint32][]string // by relation id; owned by the stream, kept across sessions
}

// fill sets rel.Routes.
func (l *routeLookup) fill(ctx context.Context, rel *Relation) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if l.conn == nil {
		conn, err := pgconn.Connect(ctx, l.url)
		if err != nil {
			return fmt.Errorf("look up the partitions of %s.%s: connect: %w", rel.Namespace, rel.Name, err)
		}
		l.conn = conn
	}
	routes, err := RelationRoutes(ctx, l.conn, rel.ID)
	if err != nil {
		l.close(ctx)
		return fmt.Errorf("look up the partitions of %s.%s: %w", rel.Namespace, rel.Name, err)
	}
	for _, old := range l.seen[rel.ID] {
		if !slices.Contains(routes, old) {
			routes = append(routes, old)
		}
	}
	l.seen[rel.ID] = routes
	rel.Routes = routes
	return nil
}

func (l *routeLookup) close(ctx context.Context) {
	if l.conn == nil {
		return
	}
	CloseConn(ctx, l.conn)
	l.conn = nil
}
