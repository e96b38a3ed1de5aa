package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/config"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

const explainHelp = `invalidator explain --table T --row '{"col":"value",...}' [--old '{...}'] [--op insert|update|delete|truncate]

Prints the keys, patterns and messages the rules produce for one row change,
without connecting to anything: a way to debug rules. --row is the new row
(insert, update), --old the old row (update, delete). JSON strings, numbers
and booleans become the text PostgreSQL would send; null is NULL.`

func explainCommand(_ context.Context, args []string, stdout, stderr io.Writer) int {
	var table, rowJSON, oldJSON, opName string
	s, code, done := load("explain", explainHelp, args, stdout, stderr, func(_ *config.Config, fs *flag.FlagSet) {
		fs.StringVar(&table, "table", "", "the table (schema.table or table)")
		fs.StringVar(&rowJSON, "row", "", "the new row as a JSON object")
		fs.StringVar(&oldJSON, "old", "", "the old row as a JSON object")
		fs.StringVar(&opName, "op", "", "insert, update, delete or truncate (default: from --row/--old)")
	}, func(c *config.Config) error {
		if c.Rules == "" {
			return &config.Error{Var: config.Var("RULES"), Msg: "must name the rules file"}
		}
		return nil
	})
	if done {
		return code
	}
	out, err := explain(s.rules, table, rowJSON, oldJSON, opName)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "invalidator explain: %v\n", err)
		return exitUsage
	}
	_, _ = io.WriteString(stdout, out)
	return exitOK
}

// skipLog collects what the router could not render.
type skipLog struct{ lines []string }

func (s *skipLog) RenderSkipped(rule, _, column string, _ bool) {
	s.lines = append(s.lines, fmt.Sprintf("rule %q: column %q is NULL or missing: that key is skipped", rule, column))
}

func (s *skipLog) NoRule(table string, _ bool) {
	s.lines = append(s.lines, fmt.Sprintf("no rule names %s", table))
}

func explain(rules *router.Rules, table, rowJSON, oldJSON, opName string) (string, error) {
	if table == "" {
		return "", errors.New("--table is required")
	}
	if !strings.Contains(table, ".") {
		table = "public." + table
	}
	newRow, err := jsonRow("--row", rowJSON)
	if err != nil {
		return "", err
	}
	oldRow, err := jsonRow("--old", oldJSON)
	if err != nil {
		return "", err
	}
	op, err := explainOp(opName, newRow != nil, oldRow != nil)
	if err != nil {
		return "", err
	}
	// the relation's columns: every name either row mentions
	var names []string
	for _, r := range []map[string]*string{newRow, oldRow} {
		for name := range r {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	cols := make([]cdc.Column, len(names))
	for i, n := range names {
		cols[i] = cdc.Column{Name: n}
	}
	rel := cdc.NewRelation(table, cols)
	tuple := func(r map[string]*string) cdc.Tuple {
		if r == nil {
			return nil
		}
		t := make(cdc.Tuple, len(names))
		for i, n := range names {
			if v, ok := r[n]; ok && v != nil {
				t[i] = cdc.Datum{Kind: cdc.DatumText, Data: []byte(*v)}
			} else {
				t[i] = cdc.Datum{Kind: cdc.DatumNull}
			}
		}
		return t
	}
	skips := &skipLog{}
	rt := router.New(rules, 0, skips)
	txn := rt.NewTxn(1)
	ch := &cdc.Change{Op: op, Xid: 1, Rel: rel, New: tuple(newRow), Old: tuple(oldRow)}
	if oldRow != nil {
		ch.OldKind = cdc.OldFull
	}
	if op == cdc.OpTruncate {
		ch = &cdc.Change{Op: op, Xid: 1, Truncated: []*cdc.Relation{rel}}
	}
	txn.Add(ch)
	res := txn.Result()

	var b bytes.Buffer
	fmt.Fprintf(&b, "%s on %s\n", op, table)
	for _, r := range rules.Rules {
		if r.Table == table {
			fmt.Fprintf(&b, "  rule %-20s %s:%d  on %s\n", r.Name, r.File, r.Line, strings.Join(r.On, ","))
		}
	}
	section := func(title string, items []string) {
		fmt.Fprintf(&b, "%s:\n", title)
		if len(items) == 0 {
			b.WriteString("  (none)\n")
		}
		for _, it := range items {
			fmt.Fprintf(&b, "  %s\n", it)
		}
	}
	section("keys (UNLINK)", res.Keys)
	section("patterns (SCAN MATCH + UNLINK)", res.Patterns)
	var msgs []string
	for i := range res.NumMessages() {
		m := res.Message(i)
		msgs = append(msgs, rules.ChannelPrefix+m.Channel+"  "+string(publisher.AppendMessage(nil, &m, 0, 1, time.Unix(0, 0))))
	}
	section("messages (PUBLISH channel payload; lsn, xid and commit_time are placeholders)", msgs)
	if len(res.Wide) > 0 {
		section("wide form", res.Wide)
	}
	if len(skips.lines) > 0 {
		section("notes", skips.lines)
	}
	return b.String(), nil
}

// jsonRow decodes a row given as a JSON object into column texts.
func jsonRow(flagName, s string) (map[string]*string, error) {
	if s == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %w", flagName, err)
	}
	row := make(map[string]*string, len(raw))
	for k, v := range raw {
		var text string
		switch v := v.(type) {
		case nil:
			row[k] = nil
			continue
		case string:
			text = v
		case json.Number:
			text = v.String()
		case bool:
			text = map[bool]string{true: "t", false: "f"}[v]
		default:
			enc, _ := json.Marshal(v) // json/jsonb columns arrive as their JSON text
			text = string(enc)
		}
		row[k] = &text
	}
	return row, nil
}

func explainOp(name string, hasNew, hasOld bool) (cdc.Op, error) {
	if name != "" {
		op, ok := cdc.ParseOp(name)
		if !ok {
			return 0, fmt.Errorf("--op %q: use insert, update, delete or truncate", name)
		}
		return op, nil
	}
	switch {
	case hasNew && hasOld:
		return cdc.OpUpdate, nil
	case hasNew:
		return cdc.OpInsert, nil
	case hasOld:
		return cdc.OpDelete, nil
	}
	return 0, errors.New("give --row, --old, or --op truncate")
}
