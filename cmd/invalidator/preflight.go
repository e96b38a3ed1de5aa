package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/router"
)

// What check reports of the database and run and setup refuse to start
// with: a rule table logical replication cannot stream, one whose place in
// a publication would break the application's writes, a publication that
// does not send what the rules fire on, a slot of another database. The
// judgments are pure; check, run and setup read the catalog and share them.

// refusal is the problems run and setup will not start with, each with the
// statement that fixes it. It is a configuration error (exit 2).
type refusal struct{ problems []finding }

func (r *refusal) Error() string {
	lines := make([]string, len(r.problems))
	for i, p := range r.problems {
		lines[i] = p.Check + ": " + p.Message
		if p.Fix != "" {
			lines[i] += "; fix: " + p.Fix
		}
	}
	return strings.Join(lines, "\n")
}

// needsOps returns the operations the table's rules fire on, in
// publication order; a rule that fires on delete fires on TRUNCATE too.
func needsOps(rules *router.Rules, table string) map[string][]string {
	need := map[string][]string{}
	for _, r := range rules.Rules {
		if r.Table != table {
			continue
		}
		for _, op := range r.On {
			need[op] = append(need[op], r.Name)
		}
		if slices.Contains(r.On, "delete") && !slices.Contains(r.On, "truncate") {
			need["truncate"] = append(need["truncate"], r.Name)
		}
	}
	return need
}

// tableFindings judges what a table is, beyond its columns: logical
// replication must stream it, its replica identity must let the
// application's UPDATE and DELETE go on once it is published, and the
// columns its rules render must be sent. pub is the existing publication
// named pubName (its zero value when run will create one publishing
// everything).
func tableFindings(rules *router.Rules, table string, id cdc.Identity, info cdc.TableInfo, pubName string, pub cdc.Publication) []finding {
	name := "table " + table
	var out []finding
	switch info.Kind {
	case 'v', 'm', 'f':
		kind := map[byte]string{'v': "a view", 'm': "a materialized view", 'f': "a foreign table"}[info.Kind]
		return []finding{{Check: name, Status: "problem",
			Message: "is " + kind + ": logical replication streams no change of it, so no rule on it ever fires",
			Fix:     "point the rule at the table(s) it reads"}}
	}
	switch info.Persistence {
	case 'u':
		return []finding{{Check: name, Status: "problem",
			Message: "is UNLOGGED: its changes are not written to the WAL, so none reaches the daemon",
			Fix:     "ALTER TABLE " + cdc.QuoteTable(table) + " SET LOGGED;"}}
	case 't':
		return []finding{{Check: name, Status: "problem", Message: "is a temporary table: logical replication does not stream it",
			Fix: "point the rule at a permanent table"}}
	}
	writes := !pub.Exists || pub.Update || pub.Delete
	if id.Kind != 'f' && len(id.Columns) == 0 && writes {
		why := "REPLICA IDENTITY " + id.Describe()
		if id.Kind == 'd' {
			why += " without a primary key"
		} else if id.Kind == 'i' {
			why += " whose index is gone"
		}
		out = append(out, finding{Check: name, Status: "problem",
			Message: why + ": in a publication that publishes UPDATE and DELETE, the application's own UPDATE and DELETE on it fail (\"does not have a replica identity\")",
			Fix:     "ALTER TABLE " + cdc.QuoteTable(table) + " REPLICA IDENTITY FULL;"})
	}
	if len(info.Generated) > 0 && !pub.GeneratedColumns {
		for _, r := range rules.Rules {
			if r.Table != table {
				continue
			}
			var used []string
			for _, c := range r.TemplateColumns() {
				if slices.Contains(info.Generated, c) {
					used = append(used, c)
				}
			}
			if len(used) > 0 {
				out = append(out, finding{Check: name, Status: "problem", startable: true,
					Message: fmt.Sprintf("rule %q renders generated column %s, which pgoutput does not send (before PostgreSQL 18, or without publish_generated_columns): every change is flushed by patterns that star it (a SCAN)", r.Name, strings.Join(used, ", ")),
					Fix:     "render the key from the columns it is generated from (on PostgreSQL 18: ALTER PUBLICATION " + cdc.QuoteIdent(pubName) + " SET (publish_generated_columns = stored);)"})
			}
		}
	}
	return out
}

// publicationFindings judges what an existing publication sends of the
// rule tables it covers: every operation the rules fire on, every row
// (no row filter) and every column a rule renders (no column list that
// omits one). A table it does not cover is not judged here.
func publicationFindings(cfg *config.Config, rules *router.Rules, pub cdc.Publication, tables []string) []finding {
	if !pub.Exists {
		return nil
	}
	check := fmt.Sprintf("publication %q", cfg.Publication)
	publishes := map[string]bool{"insert": pub.Insert, "update": pub.Update, "delete": pub.Delete, "truncate": pub.Truncate}
	var out []finding
	var lacking []string
	for _, op := range []string{"insert", "update", "delete", "truncate"} {
		var by []string
		for _, t := range tables {
			by = append(by, needsOps(rules, t)[op]...)
		}
		if len(by) > 0 && !publishes[op] {
			slices.Sort(by)
			lacking = append(lacking, fmt.Sprintf("%s (rules %s)", op, strings.Join(slices.Compact(by), ", ")))
		}
	}
	if len(lacking) > 0 {
		out = append(out, finding{Check: "publication", Status: "problem",
			Message: check + " does not publish " + strings.Join(lacking, ", ") + ": those changes never reach the daemon and their keys stay",
			Fix:     "ALTER PUBLICATION " + cdc.QuoteIdent(cfg.Publication) + " SET (publish = 'insert, update, delete, truncate');"})
	}
	for _, t := range tables {
		pt, ok := pub.Tables[t]
		if !ok {
			continue
		}
		readd := "BEGIN; ALTER PUBLICATION " + cdc.QuoteIdent(cfg.Publication) + " DROP TABLE " + cdc.QuoteTable(t) +
			"; ALTER PUBLICATION " + cdc.QuoteIdent(cfg.Publication) + " ADD TABLE " + cdc.QuoteTable(t) + "; COMMIT;"
		if pt.RowFilter != "" {
			out = append(out, finding{Check: "publication", Status: "problem",
				Message: fmt.Sprintf("%s sends only the rows of %s WHERE %s: changes to the others never reach the daemon and their keys stay", check, t, pt.RowFilter),
				Fix:     readd})
		}
		if pt.Columns == nil {
			continue
		}
		var omitted []string
		for _, r := range rules.Rules {
			if r.Table != t {
				continue
			}
			for _, c := range append(r.TemplateColumns(), r.Changed...) {
				if !slices.Contains(pt.Columns, c) && !slices.Contains(omitted, c) {
					omitted = append(omitted, c)
				}
			}
		}
		if len(omitted) > 0 {
			out = append(out, finding{Check: "publication", Status: "problem",
				Message: fmt.Sprintf("%s has a column list for %s that omits %s, which the rules use: their keys cannot be rendered", check, t, strings.Join(omitted, ", ")),
				Fix:     readd})
		}
	}
	return out
}

// slotFinding judges an existing slot the daemon would stream from: it
// must be a pgoutput slot of the configured database.
func slotFinding(cfg *config.Config, st cdc.SlotState, db string) *finding {
	name := fmt.Sprintf("slot %q", cfg.Slot)
	switch {
	case !st.Exists:
		return nil
	case st.Plugin != "pgoutput":
		return &finding{Check: "slot", Status: "problem", Message: fmt.Sprintf("%s uses plugin %s, not pgoutput", name, st.Plugin),
			Fix: "SELECT pg_drop_replication_slot('" + cfg.Slot + "'); then invalidator setup"}
	case st.Database != db:
		return &finding{Check: "slot", Status: "problem", Message: fmt.Sprintf("%s belongs to database %s, not %s", name, st.Database, db),
			Fix: "choose another " + config.Var("SLOT") + ", or point " + config.Var("POSTGRES_URL") + " at database " + st.Database}
	}
	return nil
}

// preflight reads the catalog and returns what run and setup would start
// with: problems and warnings, each with its fix. A rule naming a table or
// column that does not exist is a *router.Error.
func preflight(ctx context.Context, conn *pgconn.PgConn, cfg *config.Config, rules *router.Rules) ([]finding, error) {
	pub, err := cdc.ReadPublication(ctx, conn, cfg.Publication)
	if err != nil {
		return nil, err
	}
	tables := rules.Tables()
	var out []finding
	for _, t := range tables {
		cols, err := cdc.TableColumns(ctx, conn, t)
		if errors.Is(err, cdc.ErrNoSuchTable) {
			r := firstRule(rules, t)
			return nil, &router.Error{File: r.File, Line: r.Line, Msg: fmt.Sprintf("rule %q: table %s does not exist", r.Name, t)}
		}
		if err != nil {
			return nil, err
		}
		if err := rules.CheckColumns(t, cols); err != nil {
			return nil, err
		}
		id, err := cdc.TableIdentity(ctx, conn, t)
		if err != nil {
			return nil, err
		}
		info, err := cdc.ReadTableInfo(ctx, conn, t)
		if err != nil {
			return nil, err
		}
		out = append(out, tableFindings(rules, t, id, info, cfg.Publication, pub)...)
	}
	out = append(out, publicationFindings(cfg, rules, pub, tables)...)
	st, err := cdc.Slot(ctx, conn, cfg.Slot)
	if err != nil {
		return nil, err
	}
	db, err := cdc.Database(ctx, conn)
	if err != nil {
		return nil, err
	}
	if f := slotFinding(cfg, st, db); f != nil {
		out = append(out, *f)
	}
	return out, nil
}

// refuse returns the problems run and setup do not start with, as a
// *refusal, or nil.
func refuse(fs []finding) error {
	var problems []finding
	for _, f := range fs {
		if f.Status == "problem" && !f.startable {
			problems = append(problems, f)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &refusal{problems: problems}
}
