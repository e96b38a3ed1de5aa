package router

import (
	"sync"

	"github.com/cachewire/invalidator/cdc"
)

// DefaultMaxKeysPerTxn bounds the distinct keys, patterns and channels one
// transaction accumulates before its rules switch to their wide form.
const DefaultMaxKeysPerTxn = 100_000

// Observer is told about rows a rule could not fully render. first is true
// the first time for that rule, so that callers can log once per rule.
type Observer interface {
	RenderSkipped(rule, table, column string, first bool)
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

	mu       sync.Mutex
	bindings map[*cdc.Relation][]*boundRule
	warned   map[*Rule]bool
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
		patternPrefix: string(AppendGlobEscaped(nil, rules.KeyPrefix)),
		bindings:      map[*cdc.Relation][]*boundRule{},
		warned:        map[*Rule]bool{},
	}
	for _, r := range rules.Rules {
		rt.byTable[r.Table] = append(rt.byTable[r.Table], r)
	}
	return rt
}

// Rules returns the rules the router renders.
func (rt *Router) Rules() *Rules { return rt.rules }

// boundRule is a rule resolved against one relation description.
type boundRule struct {
	r        *Rule
	keys     []boundTemplate
	patterns []boundTemplate
	channel  *boundTemplate
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
		}
	}
	var out []*boundRule
	for _, r := range rt.byTable[rel.QualifiedName()] {
		br := &boundRule{r: r, changedKeysOnly: true}
		bt := func(t *Template) boundTemplate {
			b := boundTemplate{t: t, cols: make([]int, len(t.segs)), inScope: make([]bool, len(t.segs))}
			for i, s := range t.segs {
				switch {
				case s.col == "":
					b.cols[i] = -1
				default:
					b.cols[i] = rel.ColumnIndex(s.col)
					if b.cols[i] < 0 {
						b.cols[i] = -2
					}
					for _, sc := range r.Scope {
						b.inScope[i] = b.inScope[i] || sc == s.col
					}
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
		for _, c := range r.Changed {
			i := rel.ColumnIndex(c)
			br.changed = append(br.changed, i)
			if i < 0 || !rel.Columns[i].Key {
				br.changedKeysOnly = false
			}
		}
		for _, c := range r.Scope {
			br.scopeCols = append(br.scopeCols, rel.ColumnIndex(c))
		}
		out = append(out, br)
	}
	rt.bindings[rel] = out
	return out
}

// skipped reports a value a template needed but the row image lacked.
func (rt *Router) skipped(r *Rule, bt *boundTemplate, row cdc.Tuple) {
	if rt.obs == nil {
		return
	}
	col := ""
	for i, c := range bt.cols {
		if c == -2 || (c >= 0 && (c >= len(row) || !row[c].Present())) {
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

// renderRow renders bt from row into dst. With wide set, placeholders out
// of scope become '*'; with all set too, every placeholder does.
func (bt *boundTemplate) renderRow(dst []byte, m mode, row cdc.Tuple, all bool) ([]byte, bool) {
	for i, s := range bt.t.segs {
		if s.col == "" {
			if m == modeWideKey {
				dst = AppendGlobEscaped(dst, s.lit)
			} else {
				dst = append(dst, s.lit...)
			}
			continue
		}
		wide := m == modeWideKey || m == modeWidePat || m == modeWideCh
		if wide && (all || !bt.inScope[i]) {
			dst = append(dst, '*')
			continue
		}
		c := bt.cols[i]
		if c < 0 || c >= len(row) || !row[c].Present() {
			return dst, false
		}
		switch m {
		case modeExact, modeWideCh:
			dst = append(dst, row[c].Data...)
		default:
			dst = appendGlobEscapedBytes(dst, row[c].Data)
		}
	}
	return dst, true
}
