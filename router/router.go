package router

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/glob"
)

// DefaultMaxKeysPerTxn bounds the distinct keys, patterns and channels one
// transaction accumulates before its rules switch to their wide form.
const DefaultMaxKeysPerTxn = 100_000

// Observer is told about rows a rule could not fully render. first is true
// the first time for that rule, so that callers can log once per rule.
type Observer interface {
	RenderSkipped(rule, table, column string, first bool)
	// NoRule reports changes on a published table that no rule names (a
	// renamed table, say); first is true once per table description.
	NoRule(table string, first bool)
}

// Router renders the rules for row changes. Bindings of rules to relation
// descriptions are cached; a Router serves one stream at a time (its Txns
// are filled from one goroutine), but a finished Txn may be read anywhere.
type Router struct {
	rules   *Rules
	byTable map[string][]*Rule
	maxKeys int
	obs     Observer

	keyPrefix     string
	patternPrefix string // key prefix, glob-escaped
	subjects      bool   // render NATS subjects
	subjectPrefix string // the channel prefix as NATS subject tokens

	seed maphash.Seed // of the transactions' key and channel indexes
	// the rules' table and name, as messages refer to them
	names  []ruleName
	nameOf map[*Rule]int32

	mu       sync.Mutex
	bindings map[*cdc.Relation][]*boundRule
	warned   map[*Rule]bool
	noRule   map[*cdc.Relation]bool
}

// New returns a Router for rules. maxKeys <= 0 means DefaultMaxKeysPerTxn;
// obs may be nil.
func New(rules *Rules, maxKeys int, obs Observer) *Router {
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeysPerTxn
	}
	rt := &Router{
		rules:         rules,
		byTable:       map[string][]*Rule{},
		maxKeys:       maxKeys,
		obs:           obs,
		keyPrefix:     rules.KeyPrefix,
		seed:          maphash.MakeSeed(),
		patternPrefix: glob.Escape(rules.KeyPrefix),
		bindings:      map[*cdc.Relation][]*boundRule{},
		warned:        map[*Rule]bool{},
		noRule:        map[*cdc.Relation]bool{},
	}
	rt.nameOf = make(map[*Rule]int32, len(rules.Rules))
	for i, r := range rules.Rules {
		rt.byTable[r.Table] = append(rt.byTable[r.Table], r)
		rt.names = append(rt.names, ruleName{r.Table, r.Name})
		rt.nameOf[r] = int32(i)
	}
	return rt
}

// RenderSubjects makes every message carry its NATS subject: the channel
// prefix and channel with ':' separators as '.', each token escaped. Call
// it before any transaction is started.
func (rt *Router) RenderSubjects() {
	var b []byte
	if prefix := strings.TrimSuffix(rt.rules.ChannelPrefix, ":"); prefix != "" {
		for _, tok := range strings.Split(prefix, ":") {
			b = appendSubjectToken(b, []byte(tok))
			b = append(b, '.')
		}
	}
	rt.subjects, rt.subjectPrefix = true, string(b)
}

// SubjectPrefix returns the subject every message subject starts with, as
// RenderSubjects made it (empty before).
func (rt *Router) SubjectPrefix() string { return rt.subjectPrefix }

// Rules returns the rules the router renders.
func (rt *Router) Rules() *Rules { return rt.rules }

// boundRule is a rule resolved against one relation description.
type boundRule struct {
	r        *Rule
	name     int32 // r in Router.names
	keys     []boundTemplate
	patterns []boundTemplate
	channel  *boundTemplate
	// namespace is the rule's version key, nil when it has none
	namespace *boundTemplate
	// changed columns by index; changedKeysOnly: all are replica identity columns
	changed         []int
	changedKeysOnly bool
	scopeCols       []int
}

// boundTemplate maps each segment of a template to a column index: -1 for
// literals, -2 for a column the relation lacks. inScope marks placeholders
// kept in the wide form.
type boundTemplate struct {
	t       *Template
	cols    []int
	inScope []bool
}

func (rt *Router) bind(rel *cdc.Relation) []*boundRule {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if b, ok := rt.bindings[rel]; ok {
		return b
	}
	// A schema change makes a new *Relation; forget bindings of older ones.
	for old := range rt.bindings {
		if old.ID == rel.ID {
			delete(rt.bindings, old)
			delete(rt.noRule, old)
		}
	}
	var out []*boundRule
	// a partition's changes also go to its ancestors' rules (ADR 15),
	// whose columns are found by name: a partition may order them its way
	for _, table := range append([]string{rel.QualifiedName()}, rel.Routes...) {
		for _, r := range rt.byTable[table] {
			br := bindRule(r, rel.ColumnIndex, func(c int) bool { return c >= 0 && rel.Columns[c].Key }, r.Scope)
			br.name = rt.nameOf[r]
			out = append(out, br)
		}
	}
	rt.bindings[rel] = out
	return out
}

// bindRule resolves a rule's templates with colIndex (-1: no such column).
// isKey tells whether a column index is part of the replica identity; scope
// lists the placeholders kept in the wide form.
func bindRule(r *Rule, colIndex func(string) int, isKey func(int) bool, scope []string) *boundRule {
	br := &boundRule{r: r, changedKeysOnly: true}
	bt := func(t *Template) boundTemplate {
		b := boundTemplate{t: t, cols: make([]int, len(t.segs)), inScope: make([]bool, len(t.segs))}
		for i, s := range t.segs {
			if s.col == "" {
				b.cols[i] = -1
				continue
			}
			b.cols[i] = colIndex(s.col)
			if b.cols[i] < 0 {
				b.cols[i] = -2
			}
			for _, sc := range scope {
				b.inScope[i] = b.inScope[i] || sc == s.col
			}
		}
		return b
	}
	for _, t := range r.Keys {
		br.keys = append(br.keys, bt(t))
	}
	for _, t := range r.Patterns {
		br.patterns = append(br.patterns, bt(t))
	}
	if r.Channel != nil {
		b := bt(r.Channel)
		br.channel = &b
	}
	if r.Namespace != nil {
		b := bt(r.Namespace)
		br.namespace = &b
	}
	for _, c := range r.Changed {
		i := colIndex(c)
		br.changed = append(br.changed, i)
		if !isKey(i) {
			br.changedKeysOnly = false
		}
	}
	for _, c := range scope {
		br.scopeCols = append(br.scopeCols, colIndex(c))
	}
	return br
}

// Wide returns the wide invalidation of every rule for the given column
// values: placeholders of those columns keep the value (glob-escaped in
// patterns), every other placeholder becomes '*'. Rules that use none of
// the columns are left out; with no values at all, every rule's all-'*'
// form is returned. Messages carry op.
func (rt *Router) Wide(values map[string]string, op cdc.Op) *Result {
	names := make([]string, 0, len(values))
	row := make(cdc.Tuple, 0, len(values))
	for name, v := range values {
		names = append(names, name)
		row = append(row, cdc.Datum{Kind: cdc.DatumText, Data: []byte(v)})
	}
	colIndex := func(c string) int {
		for i, n := range names {
			if n == c {
				return i
			}
		}
		return -1
	}
	t := rt.NewTxn(0)
	for _, r := range rt.rules.Rules {
		uses := len(values) == 0
		for _, c := range r.Columns() {
			uses = uses || colIndex(c) >= 0
		}
		if !uses {
			continue
		}
		br := bindRule(r, colIndex, func(int) bool { return false }, names)
		br.name = rt.nameOf[r]
		if len(values) > 0 {
			// a template without the given columns would flush every
			// value of it, for every tenant: leave it out
			br.keys = usingAny(br.keys, names)
			br.patterns = usingAny(br.patterns, names)
			if br.channel != nil && len(usingAny([]boundTemplate{*br.channel}, names)) == 0 {
				br.channel = nil
			}
			// a global namespace would flush every value, not these:
			// their patterns bound the flush
			if br.namespace != nil && !br.namespace.t.hasColumns() {
				br.namespace = nil
			}
		}
		t.wideMessage(&t.main, br, row, op, len(values) == 0, false)
	}
	t.Commit()
	return t.Result()
}

// usingAny keeps the templates that use one of the columns.
func usingAny(ts []boundTemplate, cols []string) []boundTemplate {
	var out []boundTemplate
	for _, bt := range ts {
		for _, c := range bt.t.Columns() {
			if slices.Contains(cols, c) {
				out = append(out, bt)
				break
			}
		}
	}
	return out
}

// Finished wraps a ready Result as a finished Txn, for applying work that
// did not come from the stream (replay, resync).
func (rt *Router) Finished(res *Result) *Txn { return &Txn{rt: rt, result: res} }

// unmatched reports a change on a relation no rule names.
func (rt *Router) unmatched(rel *cdc.Relation) {
	if rt.obs == nil {
		return
	}
	rt.mu.Lock()
	first := !rt.noRule[rel]
	rt.noRule[rel] = true
	rt.mu.Unlock()
	rt.obs.NoRule(rel.QualifiedName(), first)
}

// skipped reports a value a template needed but the row image lacked.
func (rt *Router) skipped(r *Rule, bt *boundTemplate, row cdc.Tuple) {
	if rt.obs == nil {
		return
	}
	col := ""
	for i, c := range bt.cols {
		if c != -1 && valueStatus(row, c) != rendered {
			col = bt.t.segs[i].col
			break
		}
	}
	rt.mu.Lock()
	first := !rt.warned[r]
	rt.warned[r] = true
	rt.mu.Unlock()
	rt.obs.RenderSkipped(r.Name, r.Table, col, first)
}

// MaxValueLen bounds a value placed into a key, pattern or channel. A longer
// value is treated like an unavailable one: the rule takes its wide form for
// that row instead of building an enormous key.
const MaxValueLen = 64 << 10

// renderStatus says why a template could not be rendered from a row.
type renderStatus uint8

const (
	rendered    renderStatus = iota
	missingNull              // a NULL value: no such key exists
	missingWide              // a value that exists but is unknown (not sent, unchanged TOAST, a dropped column) or enormous
)

// valueStatus classifies column c of row.
func valueStatus(row cdc.Tuple, c int) renderStatus {
	if c < 0 || c >= len(row) {
		// a column this description lacks (dropped or renamed while
		// streaming) or a short tuple: the value is unknown, not NULL, and
		// keys rendered from it before may well be cached
		return missingWide
	}
	switch d := row[c]; {
	case d.Kind == cdc.DatumUnchanged:
		return missingWide
	case !d.Present():
		return missingNull
	case len(d.Data) > MaxValueLen:
		return missingWide
	}
	return rendered
}

// renderRow renders bt from row into dst. In the wide modes, placeholders
// out of scope become '*'; with all set, every placeholder does.
func (bt *boundTemplate) renderRow(dst []byte, m mode, row cdc.Tuple, all bool) ([]byte, renderStatus) {
	for i, s := range bt.t.segs {
		if s.col == "" {
			dst = m.appendLiteral(dst, s.lit)
			continue
		}
		wide := m == modeWideKey || m == modeWidePat || m == modeWideCh
		if wide && (all || !bt.inScope[i]) {
			dst = append(dst, '*')
			continue
		}
		c := bt.cols[i]
		if st := valueStatus(row, c); st != rendered {
			return dst, st
		}
		dst = m.appendValue(dst, row[c].Data)
	}
	return dst, rendered
}

// renderPartial renders bt as a pattern for one row whose values are partly
// unknown: known values are kept (glob-escaped, except in a channel),
// unknown ones become '*'. A NULL value still means no such key exists.
func (bt *boundTemplate) renderPartial(dst []byte, m mode, row cdc.Tuple) ([]byte, renderStatus) {
	for i, s := range bt.t.segs {
		if s.col == "" {
			dst = m.appendLiteral(dst, s.lit)
			continue
		}
		c := bt.cols[i]
		switch valueStatus(row, c) {
		case missingNull:
			return dst, missingNull
		case missingWide:
			dst = append(dst, '*')
		default:
			dst = m.appendValue(dst, row[c].Data)
		}
	}
	return dst, rendered
}

// subjectForm says how renderSubject renders placeholders: as the channel
// they belong to was rendered.
type subjectForm uint8

const (
	subjectExact   subjectForm = iota // values; a missing one is left out
	subjectPartial                    // values; a missing one becomes '*'
	subjectWide                       // values in scope, '*' for the others
	subjectWideAll                    // '*' for every placeholder
)

// renderSubject appends the template as NATS subject tokens: literal ':'
// separates tokens; everything else, values included (':' too), is escaped
// within its token. A '*' placeholder (see subjectForm) becomes the token
// "%2A"; a token left empty becomes "%".
func (bt *boundTemplate) renderSubject(dst []byte, row cdc.Tuple, f subjectForm) []byte {
	var tok []byte
	for i, s := range bt.t.segs {
		if s.col == "" {
			for j := 0; j < len(s.lit); j++ {
				if s.lit[j] == ':' {
					dst = appendSubjectToken(dst, tok)
					dst = append(dst, '.')
					tok = tok[:0]
					continue
				}
				tok = append(tok, s.lit[j])
			}
			continue
		}
		if f == subjectWideAll || (f == subjectWide && !bt.inScope[i]) {
			tok = append(tok, '*')
			continue
		}
		if c := bt.cols[i]; valueStatus(row, c) == rendered {
			tok = append(tok, row[c].Data...)
		} else if f == subjectPartial {
			tok = append(tok, '*')
		}
	}
	return appendSubjectToken(dst, tok)
}
