// Package router turns row changes into the cache keys, patterns and
// channels that rules render from them. It is pure: no I/O.
package router

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cachewire/invalidator/cdc"
)

// DefaultChannelPrefix is used when the rules file sets no channel_prefix.
const DefaultChannelPrefix = "cache:invalidate:"

// Rules is a validated rules file.
type Rules struct {
	Version       int
	KeyPrefix     string
	ChannelPrefix string
	Rules         []*Rule
}

// Rule is one validated rule.
type Rule struct {
	Name     string
	Table    string // always schema-qualified
	On       []string
	Changed  []string
	Keys     []*Template
	Patterns []*Template
	Channel  *Template // nil when the rule publishes no message
	Scope    []string
	// Namespace, when set, is the rule's version key (a Redis counter,
	// rendered from scope columns only): its wide form is one INCR of it
	// instead of SCAN MATCH + UNLINK (ADR 28).
	Namespace *Template
	// File and Line locate the rule in its file, for messages.
	File string
	Line int

	ops [cdc.OpTruncate + 1]bool // indexed by cdc.Op
}

// Tables returns the distinct tables the rules name, in order of appearance.
func (rs *Rules) Tables() []string {
	var out []string
	for _, r := range rs.Rules {
		if !slices.Contains(out, r.Table) {
			out = append(out, r.Table)
		}
	}
	return out
}

// Columns returns every column the rule's templates and fields use.
func (r *Rule) Columns() []string {
	var out []string
	add := func(c string) {
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	for _, t := range r.allTemplates() {
		for _, c := range t.Columns() {
			add(c)
		}
	}
	for _, c := range r.Changed {
		add(c)
	}
	for _, c := range r.Scope {
		add(c)
	}
	return out
}

// TemplateColumns returns the columns the rule's keys, patterns and channel
// render: the values an UPDATE's or DELETE's old row must carry.
func (r *Rule) TemplateColumns() []string {
	var out []string
	for _, t := range r.allTemplates() {
		for _, c := range t.Columns() {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

func (r *Rule) allTemplates() []*Template {
	ts := append(append([]*Template{}, r.Keys...), r.Patterns...)
	if r.Channel != nil {
		ts = append(ts, r.Channel)
	}
	return ts
}

// Error is a problem in a rules file, located by file and line.
type Error struct {
	File string
	Line int
	Msg  string
	Err  error // the cause, when the file could not be read
}

// Unwrap returns the cause of an unreadable file.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// LoadRules reads and validates a rules file.
func LoadRules(path string) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read rules file: %v", errors.Unwrap(err)), Err: err}
	}
	return ParseRules(path, data)
}

var (
	topFields  = []string{"version", "key_prefix", "channel_prefix", "rules"}
	ruleFields = []string{"name", "table", "on", "changed", "keys", "patterns", "channel", "scope", "namespace"}
	opNames    = []string{"insert", "update", "delete", "truncate"}
)

// ParseRules validates a rules file's contents; name is used in errors.
func ParseRules(name string, data []byte) (*Rules, error) {
	fail := func(n *yaml.Node, format string, args ...any) error {
		line := 0
		if n != nil {
			line = n.Line
		}
		return &Error{File: name, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		var te *yaml.TypeError
		msg := err.Error()
		if errors.As(err, &te) {
			msg = strings.Join(te.Errors, "; ")
		}
		// yaml.v3 says "yaml: line N: ..." for syntax errors.
		line := 0
		if _, scanErr := fmt.Sscanf(msg, "yaml: line %d:", &line); scanErr == nil {
			msg = strings.TrimSpace(msg[strings.Index(msg[len("yaml: line"):], ":")+len("yaml: line")+1:])
		}
		return nil, &Error{File: name, Line: line, Msg: "invalid YAML: " + msg}
	}
	if len(doc.Content) == 0 {
		return nil, fail(nil, "empty rules file")
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fail(top, "expected a mapping with version, channel_prefix and rules")
	}
	rs := &Rules{ChannelPrefix: DefaultChannelPrefix}
	var rulesNode, versionNode *yaml.Node
	seen := map[string]int{}
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			return nil, fail(k, "duplicate field %q (first at line %d)", k.Value, first)
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "version":
			versionNode = v
			if err := v.Decode(&rs.Version); err != nil {
				return nil, fail(v, "version: must be a number")
			}
		case "key_prefix":
			if err := decodeString(v, &rs.KeyPrefix); err != nil {
				return nil, fail(v, "key_prefix: %v", err)
			}
		case "channel_prefix":
			if err := decodeString(v, &rs.ChannelPrefix); err != nil {
				return nil, fail(v, "channel_prefix: %v", err)
			}
		case "rules":
			rulesNode = v
		default:
			return nil, fail(k, "unknown field %q (expected one of %s)", k.Value, strings.Join(topFields, ", "))
		}
	}
	if versionNode == nil {
		return nil, fail(top, "version: missing (expected version: 1)")
	}
	if rs.Version != 1 {
		return nil, fail(versionNode, "version: unsupported version %d (expected 1)", rs.Version)
	}
	if rulesNode == nil || rulesNode.Kind != yaml.SequenceNode || len(rulesNode.Content) == 0 {
		return nil, fail(orNode(rulesNode, top), "rules: expected a non-empty list of rules")
	}
	names := map[string]int{}
	for _, rn := range rulesNode.Content {
		r, err := parseRule(name, rn, fail)
		if err != nil {
			return nil, err
		}
		if prev, dup := names[r.Name]; dup {
			return nil, fail(rn, "rule %q: name already used at line %d", r.Name, prev)
		}
		names[r.Name] = rn.Line
		rs.Rules = append(rs.Rules, r)
	}
	return rs, nil
}

func orNode(n, fallback *yaml.Node) *yaml.Node {
	if n != nil {
		return n
	}
	return fallback
}

func decodeString(n *yaml.Node, dst *string) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("must be a string")
	}
	*dst = n.Value
	return nil
}

func decodeStrings(n *yaml.Node) ([]string, error) {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, errors.New("must be a list of strings")
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			return nil, errors.New("must be a list of strings")
		}
		out = append(out, c.Value)
	}
	return out, nil
}

// ruleParser reads the fields of one rule. label names the rule in every
// message ("rule \"name\"").
type ruleParser struct {
	fail   func(*yaml.Node, string, ...any) error
	label  string
	fields map[string]*yaml.Node
}

func parseRule(file string, n *yaml.Node, fail func(*yaml.Node, string, ...any) error) (*Rule, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fail(n, "each rule must be a mapping with name, table and keys")
	}
	r := &Rule{File: file, Line: n.Line}
	p := &ruleParser{fail: fail, label: "rule"}
	// the name first, so that every later message can name the rule
	if err := p.name(n, r); err != nil {
		return nil, err
	}
	if err := p.collectFields(n); err != nil {
		return nil, err
	}
	if r.Name == "" {
		return nil, fail(n, "rule: missing name")
	}
	for _, step := range []func(*yaml.Node, *Rule) error{p.table, p.ops, p.columnLists, p.templates, p.scope, p.namespace} {
		if err := step(n, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// name reads the rule's name, when it has one, and sets the label.
func (p *ruleParser) name(n *yaml.Node, r *Rule) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], n.Content[i+1]; k.Value == "name" {
			if err := decodeString(v, &r.Name); err != nil || r.Name == "" {
				return p.fail(v, "rule name: must be a non-empty string")
			}
			p.label = fmt.Sprintf("rule %q", r.Name)
			return nil
		}
	}
	return nil
}

// collectFields indexes the rule's fields by name, refusing unknown and
// repeated ones.
func (p *ruleParser) collectFields(n *yaml.Node) error {
	p.fields = map[string]*yaml.Node{}
	keyLines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(ruleFields, k.Value) {
			return p.fail(k, "%s: unknown field %q (expected one of %s)", p.label, k.Value, strings.Join(ruleFields, ", "))
		}
		if first, dup := keyLines[k.Value]; dup {
			return p.fail(k, "%s: duplicate field %q (first at line %d)", p.label, k.Value, first)
		}
		p.fields[k.Value], keyLines[k.Value] = v, k.Line
	}
	return nil
}

// table reads the table, schema-qualified (public by default).
func (p *ruleParser) table(n *yaml.Node, r *Rule) error {
	v := p.fields["table"]
	if v == nil {
		return p.fail(n, "%s: missing table", p.label)
	}
	if err := decodeString(v, &r.Table); err != nil || r.Table == "" {
		return p.fail(v, "%s: table: must be a table name", p.label)
	}
	if !strings.Contains(r.Table, ".") {
		r.Table = "public." + r.Table
	}
	if strings.Count(r.Table, ".") != 1 {
		return p.fail(v, "%s: table %q: expected table or schema.table", p.label, r.Table)
	}
	return nil
}

// ops reads on (insert, update and delete by default) into r.On and r.ops.
func (p *ruleParser) ops(_ *yaml.Node, r *Rule) error {
	r.On = []string{"insert", "update", "delete"}
	if v := p.fields["on"]; v != nil {
		on, err := decodeStrings(v)
		if err != nil || len(on) == 0 {
			return p.fail(v, "%s: on: must list some of %s", p.label, strings.Join(opNames, ", "))
		}
		for _, o := range on {
			if !slices.Contains(opNames, o) {
				return p.fail(v, "%s: on: unknown operation %q (expected %s)", p.label, o, strings.Join(opNames, ", "))
			}
		}
		r.On = on
	}
	for _, o := range r.On {
		op, _ := cdc.ParseOp(o) // each is one of opNames, checked above
		r.ops[op] = true
	}
	// A TRUNCATE removes rows: a rule that cares about deletes cares about it.
	r.ops[cdc.OpTruncate] = r.ops[cdc.OpTruncate] || r.ops[cdc.OpDelete]
	return nil
}

// columnLists reads changed and scope, lists of column names.
func (p *ruleParser) columnLists(_ *yaml.Node, r *Rule) error {
	for _, f := range []struct {
		name string
		dst  *[]string
	}{{"changed", &r.Changed}, {"scope", &r.Scope}} {
		if v := p.fields[f.name]; v != nil {
			list, err := decodeStrings(v)
			if err != nil {
				return p.fail(v, "%s: %s: %v", p.label, f.name, err)
			}
			for _, c := range list {
				if c == "" {
					return p.fail(v, "%s: %s: empty column name", p.label, f.name)
				}
			}
			*f.dst = list
		}
	}
	return nil
}

// templates compiles keys, patterns and channel, of which a rule needs one.
func (p *ruleParser) templates(n *yaml.Node, r *Rule) error {
	for _, f := range []struct {
		name string
		dst  *[]*Template
	}{{"keys", &r.Keys}, {"patterns", &r.Patterns}} {
		v := p.fields[f.name]
		if v == nil {
			continue
		}
		list, err := decodeStrings(v)
		if err != nil {
			return p.fail(v, "%s: %s: %v", p.label, f.name, err)
		}
		for i, s := range list {
			t, err := ParseTemplate(s)
			if err != nil {
				return p.fail(lineOf(v, i), "%s: %s[%d]: %v", p.label, f.name, i, err)
			}
			*f.dst = append(*f.dst, t)
		}
	}
	if v := p.fields["channel"]; v != nil {
		var s string
		if err := decodeString(v, &s); err != nil {
			return p.fail(v, "%s: channel: must be a string", p.label)
		}
		if s != "" {
			t, err := ParseTemplate(s)
			if err != nil {
				return p.fail(v, "%s: channel: %v", p.label, err)
			}
			r.Channel = t
		}
	}
	if len(r.Keys) == 0 && len(r.Patterns) == 0 && r.Channel == nil {
		return p.fail(n, "%s: needs at least one of keys, patterns or channel", p.label)
	}
	return nil
}

// scope checks that every scope column is one a template uses.
func (p *ruleParser) scope(_ *yaml.Node, r *Rule) error {
	used := map[string]bool{}
	for _, t := range r.allTemplates() {
		for _, c := range t.Columns() {
			used[c] = true
		}
	}
	for _, c := range r.Scope {
		if !used[c] {
			return p.fail(p.fields["scope"], "%s: scope: column %q is not used by any template", p.label, c)
		}
	}
	return nil
}

// namespace compiles the version key template, which may only use scope
// columns: the wide form keeps nothing else to render it with.
func (p *ruleParser) namespace(_ *yaml.Node, r *Rule) error {
	v := p.fields["namespace"]
	if v == nil {
		return nil
	}
	var s string
	if err := decodeString(v, &s); err != nil || s == "" {
		return p.fail(v, "%s: namespace: must be a non-empty string", p.label)
	}
	t, err := ParseTemplate(s)
	if err != nil {
		return p.fail(v, "%s: namespace: %v", p.label, err)
	}
	for _, c := range t.Columns() {
		if !slices.Contains(r.Scope, c) {
			if len(r.Scope) == 0 {
				return p.fail(v, "%s: namespace: column %q is not a scope column (the rule has no scope: only a namespace without placeholders fits it)", p.label, c)
			}
			return p.fail(v, "%s: namespace: column %q is not a scope column (expected only %s)", p.label, c, strings.Join(r.Scope, ", "))
		}
	}
	r.Namespace = t
	return nil
}

func lineOf(seq *yaml.Node, i int) *yaml.Node {
	if seq.Kind == yaml.SequenceNode && i < len(seq.Content) {
		return seq.Content[i]
	}
	return seq
}

// CheckColumns reports the first rule naming a column that cols (the
// table's columns) lacks.
func (rs *Rules) CheckColumns(table string, cols []string) error {
	for _, r := range rs.Rules {
		if r.Table != table {
			continue
		}
		for _, c := range r.Columns() {
			if !slices.Contains(cols, c) {
				return &Error{File: r.File, Line: r.Line, Msg: fmt.Sprintf("rule %q: table %s has no column %q", r.Name, table, c)}
			}
		}
	}
	return nil
}
