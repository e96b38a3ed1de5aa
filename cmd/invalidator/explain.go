package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"regexp"
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
(insert, update), --old the old row (update, delete). A JSON string is the
column's text as PostgreSQL sends it; true/false become t/f; null is NULL;
a column left out is unknown (as a value PostgreSQL did not send). A number
must be written as an integer or numeric column sends it (100, -2.50); one
with an exponent (1.0e2) is refused: give the column's text as a string
("100"; a float8 column sends 1e+20 as "1e+20").`

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

// skipLog collects, in order, the rules and columns the router could not
// render (once each: a column may feed a key and the channel).
type skipLog struct {
	skips   []skip
	noRules []string
}

type skip struct{ rule, column string }

func (s *skipLog) RenderSkipped(rule, _, column string, _ bool) {
	if k := (skip{rule, column}); !slices.Contains(s.skips, k) {
		s.skips = append(s.skips, k)
	}
}

func (s *skipLog) NoRule(table string, _ bool) {
	if !slices.Contains(s.noRules, table) {
		s.noRules = append(s.noRules, table)
	}
}

// explainInput is the row change explain was given.
type explainInput struct {
	table    string
	op       cdc.Op
	row, old map[string]*string // nil when not given
	change   *cdc.Change
}

func explain(rules *router.Rules, table, rowJSON, oldJSON, opName string) (string, error) {
	in, err := parseExplainInput(table, rowJSON, oldJSON, opName)
	if err != nil {
		return "", err
	}
	skips := &skipLog{}
	res := route(rules, in.change, skips)

	var b bytes.Buffer
	fmt.Fprintf(&b, "%s on %s\n", in.op, in.table)
	for _, r := range rules.Rules {
		if r.Table == in.table {
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
	if len(res.Namespaces) > 0 {
		section("namespaces (INCR)", res.Namespaces)
	}
	var msgs []string
	for i := range res.NumMessages() {
		m := res.Message(i)
		msgs = append(msgs, rules.ChannelPrefix+m.Channel+"  "+string(publisher.AppendMessage(nil, &m, 0, 1, time.Unix(0, 0))))
	}
	section("messages (PUBLISH channel payload; lsn, xid and commit_time are placeholders)", msgs)
	if len(res.Wide) > 0 {
		section("wide form", res.Wide)
	}
	if notes := in.notes(rules, skips); len(notes) > 0 {
		section("notes", notes)
	}
	return b.String(), nil
}

// route runs the router on one change, as the daemon would.
func route(rules *router.Rules, c *cdc.Change, obs router.Observer) *router.Result {
	txn := router.New(rules, 0, obs).NewTxn(1)
	txn.Add(c)
	txn.Commit()
	return txn.Result()
}

func parseExplainInput(table, rowJSON, oldJSON, opName string) (*explainInput, error) {
	if table == "" {
		return nil, errors.New("--table is required")
	}
	if !strings.Contains(table, ".") {
		table = "public." + table
	}
	in := &explainInput{table: table}
	var err error
	if in.row, err = jsonRow("--row", rowJSON); err != nil {
		return nil, err
	}
	if in.old, err = jsonRow("--old", oldJSON); err != nil {
		return nil, err
	}
	if in.op, err = explainOp(opName, in.row != nil, in.old != nil); err != nil {
		return nil, err
	}
	// the relation's columns: every name either row mentions
	var names []string
	for _, r := range []map[string]*string{in.row, in.old} {
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
	if in.op == cdc.OpTruncate {
		in.change = &cdc.Change{Op: in.op, Xid: 1, Truncated: []*cdc.Relation{rel}}
		return in, nil
	}
	in.change = &cdc.Change{Op: in.op, Xid: 1, Rel: rel, New: tuple(names, in.row), Old: tuple(names, in.old)}
	if in.old != nil {
		in.change.OldKind = cdc.OldFull
	}
	return in, nil
}

// tuple is a row image of the columns names: a column the row does not
// mention is unknown, as a value PostgreSQL did not send.
func tuple(names []string, r map[string]*string) cdc.Tuple {
	if r == nil {
		return nil
	}
	t := make(cdc.Tuple, len(names))
	for i, n := range names {
		switch v, ok := r[n]; {
		case !ok:
			t[i] = cdc.Datum{Kind: cdc.DatumUnchanged}
		case v == nil:
			t[i] = cdc.Datum{Kind: cdc.DatumNull}
		default:
			t[i] = cdc.Datum{Kind: cdc.DatumText, Data: []byte(*v)}
		}
	}
	return t
}

// notes says, for each rule the router could not fully render, why (from
// the input) and what the rule does for this row (from the router's result
// for that rule alone).
func (in *explainInput) notes(rules *router.Rules, skips *skipLog) []string {
	var notes []string
	for _, t := range skips.noRules {
		notes = append(notes, fmt.Sprintf("no rule names %s: nothing is done", t))
	}
	done := map[string]bool{}
	for _, s := range skips.skips {
		notes = append(notes, fmt.Sprintf("rule %q: %s", s.rule, in.cause(s.column)))
		if done[s.rule] {
			continue
		}
		done[s.rule] = true
		for _, r := range rules.Rules {
			if r.Name == s.rule {
				one := &router.Rules{Version: rules.Version, KeyPrefix: rules.KeyPrefix, ChannelPrefix: rules.ChannelPrefix, Rules: []*router.Rule{r}}
				notes = append(notes, fmt.Sprintf("rule %q therefore %s", s.rule, effect(route(one, in.change, nil))))
			}
		}
	}
	return notes
}

// cause says why column could not be rendered, from the row images given.
func (in *explainInput) cause(column string) string {
	var null, missing []string
	for _, img := range []struct {
		flag string
		row  map[string]*string
	}{{"--row", in.row}, {"--old", in.old}} {
		if img.row == nil {
			continue
		}
		switch v, ok := img.row[column]; {
		case !ok:
			missing = append(missing, img.flag)
		case v == nil:
			null = append(null, img.flag)
		}
	}
	var parts []string
	if len(null) > 0 {
		parts = append(parts, fmt.Sprintf("column %q is NULL in %s: every key, pattern or channel of the rule that uses it is skipped for that row (no such key can exist)",
			column, strings.Join(null, " and ")))
	}
	if len(missing) > 0 {
		parts = append(parts, fmt.Sprintf("column %q is not in %s: like a value PostgreSQL did not send, it is unknown, so every key of the rule becomes a pattern with * in its place",
			column, strings.Join(missing, " and ")))
	}
	if len(parts) == 0 {
		return fmt.Sprintf("column %q could not be rendered", column)
	}
	return strings.Join(parts, "; ")
}

// effect describes what a rule's result deletes and publishes.
func effect(res *router.Result) string {
	list := func(n int, one, many string, items []string) string {
		switch n {
		case 0:
			return "no " + one
		case 1:
			return "1 " + one + " (" + strings.Join(items, ", ") + ")"
		}
		return fmt.Sprintf("%d %s (%s)", n, many, strings.Join(items, ", "))
	}
	var channels []string
	for i := range res.NumMessages() {
		channels = append(channels, res.Channel(i))
	}
	return "deletes " + list(len(res.Keys), "key", "keys", res.Keys) +
		" and " + list(len(res.Patterns), "pattern", "patterns", res.Patterns) + bumps(res.Namespaces) +
		" and publishes " + list(len(channels), "message", "messages", channels)
}

// bumps names the namespaces a result bumps, if any.
func bumps(ns []string) string {
	if len(ns) == 0 {
		return ""
	}
	return fmt.Sprintf(", bumps %d namespace(s) (%s)", len(ns), strings.Join(ns, ", "))
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
	if raw == nil {
		return nil, fmt.Errorf("%s: not a JSON object: null (to give no row, leave %s out)", flagName, flagName)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: trailing data after the JSON object", flagName)
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
			var err error
			if text, err = numberText(v); err != nil {
				return nil, fmt.Errorf("%s: column %q: %w", flagName, k, err)
			}
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

// plainNumber is a number written as an integer or numeric column sends
// it: digits, optionally a fraction, no exponent.
var plainNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?$`)

// numberText is the column text of a JSON number. PostgreSQL sends an
// integer or numeric column's value as plain digits (1.0e2 in a numeric
// column is sent as 100), so a number in that form is its text; any other
// form (an exponent, a negative zero) could be sent in several ways
// depending on the column's type, and is refused rather than guessed.
func numberText(n json.Number) (string, error) {
	s := n.String()
	if plainNumber.MatchString(s) && (s[0] != '-' || strings.Trim(s[1:], "0.") != "") {
		return s, nil
	}
	hint := "give the column's text as a JSON string"
	if r, ok := new(big.Rat).SetString(s); ok && r.IsInt() {
		hint += fmt.Sprintf(` (an integer or numeric column sends "%s")`, r.Num())
	}
	return "", fmt.Errorf("%s is not written as PostgreSQL sends a column's value: %s", s, hint)
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
