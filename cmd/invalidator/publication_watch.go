package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/ops"
)

// errPublicationChanged stops a daemon that may not manage the publication
// when a rule table left it: its changes are no longer delivered.
var errPublicationChanged = errors.New("a rule table left the publication")

// publicationWatch checks every interval, as the active consumer, that the
// publication still sends every rule table's changes (ADR 16). PostgreSQL
// drops a table from its publications when the table is dropped, and a
// table created again under the same name is not in them: its changes
// would never arrive, and nothing would say so. When a rule table was
// re-created (a new oid), dropped, or left the publication, the watch adds
// it back when it may manage the publication, then deletes the wide form
// of the table's rules: what was committed to it before the add was never
// decoded, and the dropped table's rows took no DELETE with them; the
// flush is requested in the transaction of the add and done by the stream
// (cdc.RequestFlush). When it may not, Run returns errPublicationChanged.
type publicationWatch struct {
	interval    time.Duration
	pgURL       string
	publication string
	tables      []string
	slot        string // whose stream flushes what the watch asks for
	manage      bool   // INVALIDATOR_CREATE_SLOT: the daemon may add tables to the publication
	stream      streamState
	metrics     *ops.Metrics
	log         *zap.Logger

	seen map[string]cdc.TableCoverage // as last checked; nil before the first check
}

// Baseline records what the publication covers before the stream starts,
// when the daemon may not manage it (what it manages is only settled once
// the stream is active). A failure leaves it to the first check.
func (w *publicationWatch) Baseline(ctx context.Context) {
	if w.manage || w.interval <= 0 {
		return
	}
	if err := w.check(ctx); err != nil {
		w.log.Warn("publication check failed; retrying later", zap.Error(err))
	}
}

// Run checks until ctx ends or the publication lost a table it may not
// add back.
func (w *publicationWatch) Run(ctx context.Context) error {
	if w.interval <= 0 {
		<-ctx.Done() // off: returning early would stop the daemon
		return nil
	}
	t := time.NewTicker(w.interval)
	defer t.Stop()
	failed := failures{metrics: w.metrics, log: w.log, kind: "publication_check", msg: "publication check failed; retrying"}
	for nextActiveTick(ctx, t, w.stream) {
		err := w.check(ctx)
		if errors.Is(err, errPublicationChanged) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			failed.add(err)
		}
	}
	return nil
}

// check compares the publication's coverage with the last check and mends
// what changed. A table is remembered as checked only once mended, so a
// failure is retried at the next check.
func (w *publicationWatch) check(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, max(w.interval, 30*time.Second))
	defer cancel()
	conn, err := pgconn.Connect(qctx, w.pgURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer cdc.CloseConn(ctx, conn) // bounded: the daemon's shutdown waits for the watch
	now, err := cdc.PublicationCoverage(qctx, conn, w.publication, w.tables)
	if err != nil {
		return err
	}
	if w.seen == nil {
		w.seen = make(map[string]cdc.TableCoverage, len(now))
	}
	for _, cur := range now {
		was, known := w.seen[cur.Table]
		missing := cur.OID != 0 && !cur.Covered()
		switch {
		case missing && !w.manage && (!known || (!was.Covered() && was.OID == cur.OID)):
			// not covered since the daemon started: check calls it a
			// problem, and what was missed cannot be told
			if !known {
				w.metrics.Error("publication_changed")
				w.log.Warn("a rule table is not in the publication: its changes are not delivered", zap.String("table", cur.Table),
					zap.String("publication", w.publication), zap.String("fix", addTableSQL(w.publication, cur.Table)))
			}
		case missing || (known && cur.OID != was.OID):
			// the stream added every table before it became active: one
			// missing now left since, and a new oid is a table created again
			if err := w.mend(qctx, conn, was, known, cur); err != nil {
				return err
			}
		}
		w.seen[cur.Table] = cur
	}
	return nil
}

func addTableSQL(pub, table string) string {
	return "ALTER PUBLICATION " + cdc.QuoteIdent(pub) + " ADD TABLE " + cdc.QuoteTable(table) + ";"
}

// mend adds a table back to the publication if need be, with a request
// to the stream to flush the wide form of its rules in the same
// transaction, or only requests the flush (on conn, under ctx). The stream
// applies the flush after every change committed before the request and
// confirms it only once Redis has: a stop or crash cannot lose it.
func (w *publicationWatch) mend(ctx context.Context, conn *pgconn.PgConn, was cdc.TableCoverage, known bool, cur cdc.TableCoverage) error {
	w.metrics.Error("publication_changed")
	what := "left the publication"
	switch {
	case cur.OID == 0:
		what = "was dropped"
	case known && cur.OID != was.OID:
		what = "was dropped and created again"
	}
	fields := []zap.Field{zap.String("table", cur.Table), zap.String("publication", w.publication),
		zap.Uint32("old_oid", was.OID), zap.Uint32("oid", cur.OID)}
	if cur.OID == 0 || cur.Covered() {
		if err := cdc.RequestFlush(ctx, conn, w.slot, []string{cur.Table}); err != nil {
			return err
		}
		w.log.Warn("a rule table "+what+": its changes may have been missed; its rules will be flushed", fields...)
		return nil
	}
	if !w.manage {
		fix := addTableSQL(w.publication, cur.Table)
		w.log.Error("a rule table "+what+": its changes are not delivered, and "+config.Var("CREATE_SLOT")+
			" is false, so the daemon may not add it back. Run "+fix+" then restart the daemon and flush the table's keys",
			fields...)
		return fmt.Errorf("%w: %s %s; run %s, restart, and invalidate the table's keys (`invalidator replay --table %s` covers its current rows)",
			errPublicationChanged, cur.Table, what, fix, cur.Table)
	}
	if _, _, err := cdc.EnsurePublication(ctx, conn, w.publication, []string{cur.Table}, w.slot); err != nil {
		return err
	}
	w.log.Warn("a rule table "+what+": added it back to the publication; its rules will be flushed", fields...)
	return nil
}
