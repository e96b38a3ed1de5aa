package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/router"
)

const setupHelp = `invalidator setup

Creates, when missing, the publication (for the rule tables; missing rule
tables are added to an existing one) and the logical replication slot, then
prints the role and GRANTs a non-superuser needs to run the daemon. Safe to
run again. Run it as a role that owns the rule tables (or a superuser): only
the owner may add a table to a publication. A partitioned rule table is
added itself, which publishes its partitions, also those attached later;
setup says how their changes reach the rules.`

func setupCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s, code, done := load("setup", setupHelp, args, stdout, stderr, nil, (*config.Config).ValidateConnections)
	if done {
		return code
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := reachPostgres(ctx, s.cfg)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator setup: %v\n", err)
		return exitProblems
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()

	// refuse what would break the application's writes or never be
	// streamed, before the publication is touched
	found, err := preflight(ctx, conn, s.cfg, s.rules)
	if err == nil {
		err = refuse(found)
	}
	if err != nil {
		var rerr *router.Error
		var ref *refusal
		if errors.As(err, &rerr) || errors.As(err, &ref) {
			_, _ = fmt.Fprintf(stderr, "invalidator setup: refusing, nothing was changed:\n%v\n", err)
			return exitUsage
		}
		_, _ = fmt.Fprintf(stderr, "invalidator setup: %v\n", err)
		return exitProblems
	}
	tables := s.rules.Tables()
	created, added, err := cdc.EnsurePublication(ctx, conn, s.cfg.Publication, tables, "")
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator setup: %v\n", err)
		return exitProblems
	}
	switch {
	case created:
		_, _ = fmt.Fprintf(stdout, "publication %q: created for %s\n", s.cfg.Publication, strings.Join(tables, ", "))
	case len(added) > 0:
		_, _ = fmt.Fprintf(stdout, "publication %q: added %s\n", s.cfg.Publication, strings.Join(added, ", "))
	default:
		_, _ = fmt.Fprintf(stdout, "publication %q: exists and covers every rule table\n", s.cfg.Publication)
	}
	cov, err := cdc.PublicationCoverage(ctx, conn, s.cfg.Publication, tables)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator setup: %v\n", err)
		return exitProblems
	}
	for _, c := range cov {
		if d := c.Describe(); d != "" {
			_, _ = fmt.Fprintf(stdout, "publication %q: %s\n", s.cfg.Publication, d)
		}
	}
	slotCreated, failover, err := cdc.EnsureSlotMode(ctx, conn, s.cfg.Slot, s.cfg.SlotFailover)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator setup: %v\n", err)
		if errors.Is(err, cdc.ErrUnsupported) {
			return exitUsage
		}
		return exitProblems
	}
	if slotCreated {
		kind := "pgoutput"
		if failover {
			kind = "pgoutput, failover"
		}
		_, _ = fmt.Fprintf(stdout, "slot %q: created (%s)\n", s.cfg.Slot, kind)
	} else {
		_, _ = fmt.Fprintf(stdout, "slot %q: exists\n", s.cfg.Slot)
	}
	_, _ = fmt.Fprint(stdout, grants(s.cfg, tables))
	return exitOK
}

// grants returns the SQL that lets a dedicated non-superuser role run the
// daemon once setup has created the publication and the slot.
func grants(cfg *config.Config, tables []string) string {
	db := "your_database"
	if u, err := url.Parse(cfg.PostgresURL); err == nil && strings.Trim(u.Path, "/") != "" {
		db = strings.Trim(u.Path, "/")
	}
	schemas := map[string]bool{}
	quoted := make([]string, len(tables))
	for i, t := range tables {
		quoted[i] = cdc.QuoteTable(t)
		schema, _, _ := strings.Cut(t, ".")
		schemas[schema] = true
	}
	var b strings.Builder
	b.WriteString("\nTo run the daemon as a dedicated non-superuser role, run as a superuser:\n\n")
	b.WriteString("  CREATE ROLE invalidator WITH LOGIN REPLICATION PASSWORD 'choose-one';\n")
	fmt.Fprintf(&b, "  GRANT CONNECT ON DATABASE %s TO invalidator;\n", cdc.QuoteIdent(db))
	for s := range schemas {
		fmt.Fprintf(&b, "  GRANT USAGE ON SCHEMA %s TO invalidator;\n", cdc.QuoteIdent(s))
	}
	fmt.Fprintf(&b, "  GRANT SELECT ON %s TO invalidator;\n", strings.Join(quoted, ", "))
	b.WriteString("\nREPLICATION lets it stream from the slot and write heartbeat probes; SELECT lets\n")
	b.WriteString("`check` read the catalog and `replay --table` read rows. Then run the daemon with\n")
	fmt.Fprintf(&b, "%s=false, since only the tables' owner may change the publication,\n", config.Var("CREATE_SLOT"))
	b.WriteString("and make sure pg_hba.conf admits the role for database connections.\n")
	return b.String()
}
