package router

import (
	"slices"

	"github.com/cachewire/invalidator/cdc"
)

// Message is one invalidation message: what a transaction did to the
// entity behind one channel.
type Message struct {
	Channel string // without the channel prefix
	// Subject is the NATS subject (prefix included), when the router renders them.
	Subject  string
	Op       cdc.Op // the last operation on this channel in the transaction
	Table    string
	Rule     string
	Keys     []string
	Patterns []string // wide invalidations (wide form or TRUNCATE)
	// Namespaces are version keys (key prefix included) to INCR: the wide
	// form of a rule with a namespace.
	Namespaces []string
}

// Result is what one committed transaction invalidates.
//
// Its messages are kept compact, without a pointer each (a transaction may
// have a million): read them with NumMessages and Message, which returns
// a view into the Result without allocating.
type Result struct {
	Keys []string // exact keys, key prefix included, de-duplicated
	// Unlinked: Keys[:Unlinked] were handed on ahead of the commit (see
	// Txn.Early) and need no deleting again; they are still the
	// transaction's keys, for its messages and its journal entry.
	Unlinked int
	Patterns []string // MATCH patterns, key prefix included, de-duplicated
	// Covered lists patterns that cover the keys a committed transaction
	// deleted exactly past the key bound and no longer lists (ADR 27):
	// its wide-form messages carry them and so does its journal entry, but
	// they are never scanned, since those keys are deleted already.
	Covered []string
	// Namespaces are version keys to INCR, key prefix included, de-duplicated.
	Namespaces []string
	Changes    int // row changes the rules looked at
	// Counts breaks Changes down by table and operation.
	Counts []ChangeCount
	// Wide lists rules that switched to their wide form in this
	// transaction: patterns scanned in Redis.
	Wide []string
	// PastBound lists rules that went past the key bound in a committed
	// transaction and went on deleting exact keys, their messages in the
	// wide form (ADR 27).
	PastBound []string

	chunks  []string // what the messages' channels and subjects point into
	msgs    list[msgRec]
	subj    list[sref]         // per message, when subjects are rendered
	msgKeys []string           // keys of messages flagged spilled
	msgPats map[int32][]string // patterns by message
	msgNS   map[int32][]string // namespaces by message
	names   []ruleName
}

// msgRec is one message of a transaction, without pointers.
type msgRec struct {
	ch     sref
	lo, hi int32 // its keys: Keys[lo:hi], or msgKeys[lo:hi] when spilled
	name   int32 // its rule: names[name]
	op     cdc.Op
	// spilled: the keys are not one run of the key list (a key shared
	// with another message, or listed again later in the transaction)
	spilled bool
}

type ruleName struct{ table, rule string }

// NumMessages is the number of messages.
func (r *Result) NumMessages() int { return r.msgs.len() }

// Message returns message i, 0 <= i < NumMessages. Its strings and slices
// are shared with the Result: do not modify them.
func (r *Result) Message(i int) Message {
	rec := r.msgs.at(int32(i))
	n := r.names[rec.name]
	m := Message{Channel: str(r.chunks, rec.ch), Op: rec.op, Table: n.table, Rule: n.rule}
	if rec.hi > rec.lo {
		if rec.spilled {
			m.Keys = r.msgKeys[rec.lo:rec.hi:rec.hi]
		} else {
			m.Keys = r.Keys[rec.lo:rec.hi:rec.hi]
		}
	}
	if r.subj.len() > 0 {
		m.Subject = str(r.chunks, *r.subj.at(int32(i)))
	}
	if p := r.msgPats[int32(i)]; len(p) > 0 {
		m.Patterns = p[:len(p):len(p)]
	}
	if ns := r.msgNS[int32(i)]; len(ns) > 0 {
		m.Namespaces = ns[:len(ns):len(ns)]
	}
	return m
}

// Channel returns message i's channel.
func (r *Result) Channel(i int) string { return str(r.chunks, r.msgs.at(int32(i)).ch) }

// Messages returns every message as a slice, for tools and tests; the
// publishing path reads them one at a time with Message.
func (r *Result) Messages() []Message {
	out := make([]Message, r.NumMessages())
	for i := range out {
		out[i] = r.Message(i)
	}
	return out
}

// AddMessage appends m, for results that do not come from the stream
// (replay from the journal). m.Keys is copied; m.Patterns and
// m.Namespaces are kept.
func (r *Result) AddMessage(m Message) {
	i := int32(r.msgs.len())
	rec := msgRec{op: m.Op, name: r.nameIndex(ruleName{m.Table, m.Rule}), spilled: true}
	rec.ch = r.addChunk(m.Channel)
	rec.lo = int32(len(r.msgKeys))
	r.msgKeys = append(r.msgKeys, m.Keys...)
	rec.hi = int32(len(r.msgKeys))
	r.msgs.add(rec)
	if m.Subject != "" && r.subj.len() == 0 {
		for range i { // the earlier messages have no subject
			r.subj.add(sref{})
		}
	}
	if r.subj.len() > 0 || m.Subject != "" {
		r.subj.add(r.addChunk(m.Subject))
	}
	if len(m.Patterns) > 0 {
		if r.msgPats == nil {
			r.msgPats = map[int32][]string{}
		}
		r.msgPats[i] = m.Patterns
	}
	if len(m.Namespaces) > 0 {
		if r.msgNS == nil {
			r.msgNS = map[int32][]string{}
		}
		r.msgNS[i] = m.Namespaces
	}
}

// nameIndex returns n's index in names, adding it if new. Messages of one
// rule come in runs: the previous message's is tried first.
func (r *Result) nameIndex(n ruleName) int32 {
	if k := r.msgs.len(); k > 0 {
		if last := r.msgs.at(int32(k - 1)).name; r.names[last] == n {
			return last
		}
	}
	if j := slices.Index(r.names, n); j >= 0 {
		return int32(j)
	}
	// full slice expression: names may be shared with the router
	r.names = append(r.names[:len(r.names):len(r.names)], n)
	return int32(len(r.names) - 1)
}

func (r *Result) addChunk(s string) sref {
	if s == "" {
		return sref{}
	}
	r.chunks = append(r.chunks, s)
	return sref{c: uint32(len(r.chunks) - 1), n: uint32(len(s))}
}

// ChangeCount is how many changes of one operation a table had.
type ChangeCount struct {
	Table string
	Op    cdc.Op
	N     int
}

// ToUnlink returns the keys still to delete: those not handed on early.
func (r *Result) ToUnlink() []string { return r.Keys[r.Unlinked:] }

// Empty reports whether there is nothing to invalidate or publish.
func (r *Result) Empty() bool {
	return len(r.Keys) == 0 && len(r.Patterns) == 0 && len(r.Namespaces) == 0 && r.msgs.len() == 0
}

// Txn accumulates what one transaction invalidates. Its size is bounded:
// past the router's key bound, a rule switches to its wide form for the
// rest of the transaction. It implements cdc.Txn.
type Txn struct {
	rt     *Router
	xid    uint32
	strs   strs // every part's keys, channels and subjects
	main   part
	subs   map[uint32]*part // streamed subtransactions, dropped on abort
	budget int
	buf    []byte // the key, pattern or channel being rendered
	buf0   [64]byte
	subj   []byte
	newImg cdc.Tuple
	oldImg cdc.Tuple
	result *Result
	// the last relation's rules, so that a run of changes on one table
	// binds once
	lastRel   *cdc.Relation
	lastRules []*boundRule
	// everyRule makes every rule of a table fire, whatever its on and
	// changed say (replay re-reads current rows).
	everyRule bool
	// early: the main part's first early keys were handed on by Early
	early int
	// committed: the caller vouched (by calling Early) that the
	// transaction has committed and arrives whole, so past the key bound
	// its keys are still deleted exactly, in parts (ADR 27)
	committed bool
	// over holds the exact keys past the bound not handed on yet
	over overflow
}

// overflow is the exact keys of a committed transaction past the key bound
// that Early has not handed on yet: at most about EarlyKeys of them, after
// which Early hands them on and forgets them.
type overflow struct {
	strs strs
	keys list[sref]
	idx  index
}

func (o *overflow) ref(i int32) sref { return *o.keys.at(i) }

type part struct {
	keys     index // finds a key's index in keyList
	keyList  list[sref]
	keyMsg   list[int32] // per key: the message that listed it last (-1: none)
	patterns map[string]struct{}
	patList  []string
	cover    map[string]struct{} // Result.Covered, by pattern
	covList  []string
	msgIdx   index // finds a channel's index in msgs
	msgs     list[msgRec]
	subj     list[sref]          // per message, when subjects are rendered
	spill    map[int32][]int32   // keys (indexes in keyList) of spilled messages
	msgPats  map[int32][]string  // patterns by message
	ns       map[string]struct{} // namespaces to INCR
	nsList   []string
	msgNS    map[int32][]string // namespaces by message
	wide     map[*Rule]*wideState
	changes  int
	counts   []ChangeCount
}

func (p *part) count(table string, op cdc.Op) {
	for i := range p.counts {
		if p.counts[i].Op == op && p.counts[i].Table == table {
			p.counts[i].N++
			return
		}
	}
	p.counts = append(p.counts, ChangeCount{Table: table, Op: op, N: 1})
}

type wideState struct {
	scopes   map[string]struct{}
	unscoped bool
	// exact: past the key bound of a committed transaction, the rule's
	// keys are still deleted exactly; its wide form is for its messages
	// (and its own patterns) only
	exact bool
}

// maxWideScopes bounds the distinct scope values a wide rule tracks before
// it flushes every value of the scope columns.
func (rt *Router) maxWideScopes() int { return max(rt.maxKeys/10, 16) }

// NewTxn starts accumulating a transaction.
func (rt *Router) NewTxn(xid uint32) *Txn {
	t := &Txn{rt: rt, xid: xid}
	t.buf = t.buf0[:0]
	return t
}

// NewReplayTxn starts accumulating rows read back from a table: every rule
// on the table fires for every row, whatever its on and changed say.
func (rt *Router) NewReplayTxn() *Txn {
	t := rt.NewTxn(0)
	t.everyRule = true
	return t
}

// DiscardSub forgets an aborted subtransaction's changes.
func (t *Txn) DiscardSub(subxid uint32) { delete(t.subs, subxid) }

// maxSubParts bounds the subtransactions a streamed transaction keeps apart
// (so that an abort can drop exactly their changes). Past it, further
// subtransactions share the main part: if one of them aborts, its keys are
// still invalidated (too much, never too little), and memory stays bounded.
const maxSubParts = 256

func (t *Txn) partFor(xid uint32) *part {
	if xid == 0 || xid == t.xid {
		return &t.main
	}
	p := t.subs[xid]
	if p == nil {
		if len(t.subs) >= maxSubParts {
			return &t.main
		}
		if t.subs == nil {
			t.subs = map[uint32]*part{}
		}
		p = &part{}
		t.subs[xid] = p
	}
	return p
}

// Add renders the rules of one row change.
func (t *Txn) Add(c *cdc.Change) {
	p := t.partFor(c.Xid)
	p.changes++
	if c.Op == cdc.OpTruncate {
		for _, rel := range c.Truncated {
			p.count(rel.QualifiedName(), c.Op)
			for _, br := range t.rt.bind(rel) {
				if br.r.ops[cdc.OpTruncate] {
					t.addWide(p, br, nil, cdc.OpTruncate, true, false)
				}
			}
		}
		return
	}
	p.count(c.Rel.QualifiedName(), c.Op)
	if c.Rel != t.lastRel {
		t.lastRel, t.lastRules = c.Rel, t.rt.bind(c.Rel)
	}
	rules := t.lastRules
	if len(rules) == 0 {
		t.rt.unmatched(c.Rel)
		return
	}
	newImg, oldImg := t.images(c)
	for _, br := range rules {
		if !t.everyRule && !br.r.ops[c.Op] {
			continue
		}
		if !t.everyRule && c.Op == cdc.OpUpdate && len(br.changed) > 0 && !changed(br, c) {
			continue
		}
		if newImg != nil {
			t.addRow(p, br, newImg, c.Op)
		}
		if oldImg != nil {
			t.addRow(p, br, oldImg, c.Op)
		}
	}
}

// images returns the row images to render: the new row (unchanged TOAST
// values filled from the old row when it has them) and the old row (with
// only key columns known, the rest taken from the new row).
func (t *Txn) images(c *cdc.Change) (newImg, oldImg cdc.Tuple) {
	oldImg = c.Old
	if c.OldKind == cdc.OldKey {
		// a key-only old row: its other columns are unknown, not NULL
		t.oldImg = append(t.oldImg[:0], c.Old...)
		for i := range t.oldImg {
			if i >= len(c.Rel.Columns) || !c.Rel.Columns[i].Key {
				t.oldImg[i] = cdc.Datum{Kind: cdc.DatumUnchanged}
			}
		}
		oldImg = t.oldImg
	}
	switch c.Op {
	case cdc.OpInsert:
		return c.New, nil
	case cdc.OpDelete:
		return nil, oldImg
	}
	newImg = c.New
	if c.OldKind == cdc.OldFull && len(c.Old) == len(c.New) {
		// unchanged TOASTed values of the new row are in the full old row
		copied := false
		for i, d := range c.New {
			if d.Kind == cdc.DatumUnchanged && c.Old[i].Present() {
				if !copied {
					t.newImg = append(t.newImg[:0], c.New...)
					newImg, copied = t.newImg, true
				}
				t.newImg[i] = c.Old[i]
			}
		}
	}
	if c.OldKind == cdc.OldNone {
		return newImg, nil
	}
	return newImg, oldImg
}

// changed reports whether an UPDATE changed one of the rule's changed
// columns, or cannot tell (then it fires: never miss an update).
func changed(br *boundRule, c *cdc.Change) bool {
	if c.OldKind == cdc.OldNone || (c.OldKind == cdc.OldKey && !br.changedKeysOnly) || len(c.Old) != len(c.New) {
		return true
	}
	for _, i := range br.changed {
		if i < 0 || i >= len(c.Old) || i >= len(c.New) {
			return true
		}
		o, n := c.Old[i], c.New[i]
		if n.Kind == cdc.DatumUnchanged {
			continue
		}
		if o.Kind != n.Kind || string(o.Data) != string(n.Data) {
			return true
		}
	}
	return false
}

func (t *Txn) overBudget() bool { return t.budget >= t.rt.maxKeys }

func (t *Txn) addRow(p *part, br *boundRule, row cdc.Tuple, op cdc.Op) {
	if w := p.wide[br.r]; w != nil {
		if w.exact {
			t.pastBound(p, br, row, op)
		} else {
			t.addWide(p, br, row, op, false, false)
		}
		return
	}
	msg := int32(-1)
	if br.channel != nil {
		ch, ok, stop := t.render(p, br, br.channel, "", modeExact, row, op)
		if stop {
			return
		}
		if ok {
			if i, _ := p.findMsg(t, ch); i < 0 && t.overBudget() {
				t.overBound(p, br, row, op)
				return
			}
			msg = p.message(t, ch, op, br, row, subjectExact)
		}
	}
	for i := range br.keys {
		key, ok, stop := t.render(p, br, &br.keys[i], t.rt.keyPrefix, modeExact, row, op)
		if stop {
			return
		}
		if !ok {
			continue
		}
		ki, h := p.findKey(t, key)
		if ki >= 0 {
			// a key listed by another message in between: list it here too,
			// unless this message has it already
			if msg >= 0 && !p.msgHasKey(msg, ki) {
				p.listKey(msg, ki)
			}
			continue
		}
		if t.overBudget() {
			t.overBound(p, br, row, op)
			return
		}
		ki = p.addKey(t, key, h)
		t.budget++
		if msg >= 0 {
			p.listKey(msg, ki)
		}
	}
	for i := range br.patterns {
		pat, ok, stop := t.render(p, br, &br.patterns[i], t.rt.patternPrefix, modePattern, row, op)
		if stop {
			return
		}
		if !ok {
			continue
		}
		if _, exists := p.patterns[string(pat)]; !exists && t.overBudget() {
			t.overBound(p, br, row, op)
			return
		}
		t.addPattern(p, pat, msg)
	}
}

// overBound takes a row that would grow the transaction past the key
// bound: it switches the rule to its wide form, in which a committed
// transaction still deletes the row's exact keys (pastBound).
func (t *Txn) overBound(p *part, br *boundRule, row cdc.Tuple, op cdc.Op) {
	if t.committed && p == &t.main && len(t.subs) == 0 {
		t.pastBound(p, br, row, op)
		return
	}
	t.addWide(p, br, row, op, false, false)
}

// pastBound renders a row of a committed transaction past the key bound
// (ADR 27): its exact keys go to the overflow, which Early hands on and
// forgets, and its messages take the wide form, whose key patterns are
// listed (Covered) but not scanned. A key with an unknown value cannot be
// enumerated: the rule then takes its scanned wide form for every value,
// which stays bounded however many such rows follow.
func (t *Txn) pastBound(p *part, br *boundRule, row cdc.Tuple, op cdc.Op) {
	for i := range br.keys {
		bt := &br.keys[i]
		var st renderStatus
		t.buf, st = bt.renderRow(append(t.buf[:0], t.rt.keyPrefix...), modeExact, row, false)
		switch st {
		case rendered:
			t.addOver(p, t.buf)
		case missingNull:
			t.rt.skipped(br.r, bt, row)
		default:
			t.rt.skipped(br.r, bt, row)
			t.addWide(p, br, row, op, true, false)
			return
		}
	}
	t.addWide(p, br, row, op, false, true)
}

// addOver adds an exact key past the bound, unless the transaction has it.
func (t *Txn) addOver(p *part, key []byte) {
	if i, _ := p.findKey(t, key); i >= 0 {
		return
	}
	o := &t.over
	i, h := o.idx.find(t.rt.seed, &o.strs, key, o.keys.len(), o.ref)
	if i >= 0 {
		return
	}
	i = o.keys.add(o.strs.add(key))
	o.idx.add(t.rt.seed, &o.strs, i, h, o.keys.len(), o.ref)
}

// render renders bt after prefix for addRow, into the Txn's scratch
// buffer: out is valid until the next rendering. ok: rendered. A NULL value
// skips this template (counted); an unknown one hands the whole row to
// unavailable, and stop tells the caller the row is done.
func (t *Txn) render(p *part, br *boundRule, bt *boundTemplate, prefix string, m mode, row cdc.Tuple, op cdc.Op) (out []byte, ok, stop bool) {
	var st renderStatus
	t.buf, st = bt.renderRow(append(t.buf[:0], prefix...), m, row, false)
	switch st {
	case missingWide:
		t.unavailable(p, br, bt, row, op)
		return nil, false, true
	case missingNull:
		t.rt.skipped(br.r, bt, row)
		return nil, false, false
	}
	return t.buf, true, false
}

// unavailable handles a row with a value that exists but is unknown (an
// unchanged TOASTed value PostgreSQL did not send, a column outside the
// replica identity of an old row, a dropped column) or enormous: the key
// it feeds may be cached, so every template of the rule is rendered as a
// pattern with the known values kept and only the unknown ones as '*'. It
// is counted like a skipped key.
func (t *Txn) unavailable(p *part, br *boundRule, bt *boundTemplate, row cdc.Tuple, op cdc.Op) {
	t.rt.skipped(br.r, bt, row)
	if t.overBudget() {
		// past the bound a pattern a row would grow with rows: the
		// rule's scanned wide form instead
		t.addWide(p, br, row, op, false, false)
		return
	}
	msg := int32(-1)
	if br.channel != nil {
		var st renderStatus
		if t.buf, st = br.channel.renderPartial(t.buf[:0], modeWideCh, row); st == rendered {
			msg = p.message(t, t.buf, op, br, row, subjectPartial)
		}
	}
	for i := range br.keys {
		t.partialPattern(p, &br.keys[i], modeWideKey, row, msg)
	}
	for i := range br.patterns {
		t.partialPattern(p, &br.patterns[i], modeWidePat, row, msg)
	}
}

// partialPattern adds bt's pattern for a row with unknown values (see
// renderPartial), unless a NULL value means no such key exists.
func (t *Txn) partialPattern(p *part, bt *boundTemplate, m mode, row cdc.Tuple, msg int32) {
	var st renderStatus
	if t.buf, st = bt.renderPartial(append(t.buf[:0], t.rt.patternPrefix...), m, row); st == rendered {
		t.addPattern(p, t.buf, msg)
	}
}

// addPattern adds the pattern b, listing it in message msg (if >= 0).
func (t *Txn) addPattern(p *part, b []byte, msg int32) {
	if _, exists := p.patterns[string(b)]; exists {
		if msg >= 0 && !slices.Contains(p.msgPats[msg], string(b)) {
			listUnder(&p.msgPats, msg, string(b))
		}
		return
	}
	pat := string(b)
	if p.patterns == nil {
		p.patterns = map[string]struct{}{}
	}
	p.patterns[pat] = struct{}{}
	p.patList = grow(p.patList, pat)
	t.budget++
	if msg >= 0 && (len(p.cover) == 0 || !slices.Contains(p.msgPats[msg], pat)) {
		listUnder(&p.msgPats, msg, pat)
	}
}

// listUnder lists s under message msg in m (the patterns or the
// namespaces by message), making m on first use.
func listUnder(m *map[int32][]string, msg int32, s string) {
	if *m == nil {
		*m = map[int32][]string{}
	}
	(*m)[msg] = append((*m)[msg], s)
}

// message returns the index of the message for channel ch, creating it.
// When the router renders NATS subjects, the new message's subject is
// rendered from br's channel and row in form f, the form ch was rendered in.
func (p *part) message(t *Txn, ch []byte, op cdc.Op, br *boundRule, row cdc.Tuple, f subjectForm) int32 {
	i, h := p.findMsg(t, ch)
	if i >= 0 {
		m := p.msgs.at(i)
		m.op, m.name = op, br.name
		return i
	}
	i = p.msgs.add(msgRec{ch: t.strs.add(ch), op: op, name: br.name})
	p.msgIdx.add(t.rt.seed, &t.strs, i, h, p.msgs.len(), p.msgRef)
	if t.rt.subjects {
		t.subj = br.channel.renderSubject(append(t.subj[:0], t.rt.subjectPrefix...), row, f)
		p.subj.add(t.strs.add(t.subj))
	}
	t.budget++
	return i
}

func (p *part) keyRef(i int32) sref { return *p.keyList.at(i) }
func (p *part) msgRef(i int32) sref { return p.msgs.at(i).ch }

// findKey returns the index of key in the key list, or -1, and its hash
// for addKey.
func (p *part) findKey(t *Txn, key []byte) (int32, uint32) {
	return p.keys.find(t.rt.seed, &t.strs, key, p.keyList.len(), p.keyRef)
}

// addKey appends key, new with hash h, and returns its index.
func (p *part) addKey(t *Txn, key []byte, h uint32) int32 {
	i := p.keyList.add(t.strs.add(key))
	p.keyMsg.add(-1)
	p.keys.add(t.rt.seed, &t.strs, i, h, p.keyList.len(), p.keyRef)
	return i
}

// findMsg returns the index of the message for channel ch, or -1, and its
// hash for msgIdx.add.
func (p *part) findMsg(t *Txn, ch []byte) (int32, uint32) {
	return p.msgIdx.find(t.rt.seed, &t.strs, ch, p.msgs.len(), p.msgRef)
}

// msgHasKey reports whether message msg lists key ki.
func (p *part) msgHasKey(msg, ki int32) bool {
	if *p.keyMsg.at(ki) == msg {
		return true
	}
	m := p.msgs.at(msg)
	if m.spilled {
		return slices.Contains(p.spill[msg], ki)
	}
	return m.lo <= ki && ki < m.hi
}

// listKey lists key ki, not yet listed, in message msg. A message's keys
// are a run of the key list while they can be (nearly always: a row's keys
// are added one after the other); otherwise the message keeps its own list.
func (p *part) listKey(msg, ki int32) {
	*p.keyMsg.at(ki) = msg
	m := p.msgs.at(msg)
	switch {
	case m.spilled:
		p.spill[msg] = append(p.spill[msg], ki)
	case m.lo == m.hi:
		m.lo, m.hi = ki, ki+1
	case ki == m.hi:
		m.hi++
	default:
		if p.spill == nil {
			p.spill = map[int32][]int32{}
		}
		keys := make([]int32, 0, m.hi-m.lo+1)
		for k := m.lo; k < m.hi; k++ {
			keys = append(keys, k)
		}
		p.spill[msg] = append(keys, ki)
		m.spilled = true
	}
}

// grow appends v, doubling the capacity when it is full: a transaction's
// lists grow to hundreds of thousands of entries, and append's gentler
// growth of large slices would copy them several times over.
func grow[T any](s []T, v T) []T {
	if len(s) == cap(s) {
		n := make([]T, len(s), max(1, 2*cap(s)))
		copy(n, s)
		s = n
	}
	return append(s, v)
}

// addWide renders the rule's wide form for row's scope values (for every
// value when all is set or the scope cannot be bounded any more). exact:
// the row's keys are deleted exactly (pastBound), and the form's key
// patterns are only listed, not scanned.
func (t *Txn) addWide(p *part, br *boundRule, row cdc.Tuple, op cdc.Op, all, exact bool) {
	if p.wide == nil {
		p.wide = map[*Rule]*wideState{}
	}
	w := p.wide[br.r]
	if w == nil {
		w = &wideState{exact: exact}
		p.wide[br.r] = w
	}
	if w.exact && !exact {
		// the wide form now reaches Redis (a TRUNCATE, say): for every
		// value, which covers the scope values listed so far
		w.exact, w.scopes, w.unscoped = false, nil, false
		all = true
	}
	if w.unscoped {
		if op == cdc.OpTruncate || all {
			t.wideMessage(p, br, row, op, true, w.exact)
		}
		return
	}
	if !all && len(br.r.Scope) > 0 {
		// the scope tuple, NUL-separated, identifies the wide flush
		t.buf = t.buf[:0]
		for _, c := range br.scopeCols {
			if valueStatus(row, c) != rendered {
				all = true // cannot bound it: flush every value
				break
			}
			t.buf = append(append(t.buf, row[c].Data...), 0)
		}
		if !all {
			if _, seen := w.scopes[string(t.buf)]; seen {
				return
			}
			if len(w.scopes) >= t.rt.maxWideScopes() {
				all = true
			} else {
				if w.scopes == nil {
					w.scopes = map[string]struct{}{}
				}
				w.scopes[string(t.buf)] = struct{}{}
			}
		}
	} else {
		all = true
	}
	if all {
		w.unscoped, w.scopes = true, nil
	}
	t.wideMessage(p, br, row, op, all, w.exact)
}

// FlushTables adds the all-'*' wide form of every rule on the tables,
// whatever its on: (for tables some of whose changes were never decoded,
// ADR 16).
func (t *Txn) FlushTables(tables []string) {
	for _, r := range t.rt.rules.Rules {
		if slices.Contains(tables, r.Table) {
			br := bindRule(r, func(string) int { return -1 }, func(int) bool { return false }, nil)
			br.name = t.rt.nameOf[r]
			t.addWide(&t.main, br, nil, cdc.OpTruncate, true, false)
		}
	}
}

// wideMessage adds the rule's wide form for row; exact: its key patterns
// are covered (listed, not scanned).
func (t *Txn) wideMessage(p *part, br *boundRule, row cdc.Tuple, op cdc.Op, all, exact bool) {
	msg := int32(-1)
	if br.channel != nil {
		var st renderStatus
		t.buf, st = br.channel.renderRow(t.buf[:0], modeWideCh, row, all)
		if st != rendered { // a scope value is missing: publish on the all-'*' channel
			all = true
			t.buf, _ = br.channel.renderRow(t.buf[:0], modeWideCh, row, true)
		}
		f := subjectWide
		if all {
			f = subjectWideAll
		}
		msg = p.message(t, t.buf, op, br, row, f)
	}
	// past the bound with exact keys deleted (ADR 27) nothing needs
	// bumping: the covered patterns tell in-process caches what went
	if !exact && t.addNamespace(p, br, row, all, msg) {
		return
	}
	for i := range br.keys {
		t.widePattern(p, &br.keys[i], modeWideKey, row, all, msg, exact)
	}
	for i := range br.patterns {
		t.widePattern(p, &br.patterns[i], modeWidePat, row, all, msg, false)
	}
}

// addNamespace adds the rule's version key as its wide form, if it has
// one that can be rendered: from row's scope values, or, for every value
// (all), only when it names no column. It reports whether it did; if not,
// the wide form is the patterns.
func (t *Txn) addNamespace(p *part, br *boundRule, row cdc.Tuple, all bool, msg int32) bool {
	ns := br.namespace
	if ns == nil || (all && ns.t.hasColumns()) {
		return false
	}
	var st renderStatus
	t.buf, st = ns.renderRow(append(t.buf[:0], t.rt.keyPrefix...), modeExact, row, false)
	if st != rendered {
		return false
	}
	if _, exists := p.ns[string(t.buf)]; exists {
		if msg >= 0 && !slices.Contains(p.msgNS[msg], string(t.buf)) {
			listUnder(&p.msgNS, msg, string(t.buf))
		}
		return true
	}
	key := string(t.buf)
	if p.ns == nil {
		p.ns = map[string]struct{}{}
	}
	p.ns[key] = struct{}{}
	p.nsList = append(p.nsList, key)
	t.budget++
	if msg >= 0 {
		listUnder(&p.msgNS, msg, key)
	}
	return true
}

// widePattern adds one wide pattern (cover: as covered, see addCover); if
// a scope value is missing it falls back to every placeholder '*', never
// to nothing.
func (t *Txn) widePattern(p *part, bt *boundTemplate, m mode, row cdc.Tuple, all bool, msg int32, cover bool) {
	var st renderStatus
	t.buf, st = bt.renderRow(append(t.buf[:0], t.rt.patternPrefix...), m, row, all)
	if st != rendered {
		t.buf, _ = bt.renderRow(append(t.buf[:0], t.rt.patternPrefix...), m, row, true)
	}
	if cover {
		t.addCover(p, t.buf, msg)
	} else {
		t.addPattern(p, t.buf, msg)
	}
}

// addCover adds the pattern b as covering keys deleted exactly past the
// bound (Result.Covered), listing it in message msg (if >= 0).
func (t *Txn) addCover(p *part, b []byte, msg int32) {
	if _, scanned := p.patterns[string(b)]; scanned {
		t.addPattern(p, b, msg)
		return
	}
	if _, exists := p.cover[string(b)]; !exists {
		if p.cover == nil {
			p.cover = map[string]struct{}{}
		}
		pat := string(b)
		p.cover[pat] = struct{}{}
		p.covList = append(p.covList, pat)
	}
	if msg >= 0 && !slices.Contains(p.msgPats[msg], string(b)) {
		listUnder(&p.msgPats, msg, string(b))
	}
}

// EarlyKeys is how many exact keys a transaction gathers before Early
// hands them on: as many as one round trip of UNLINKs carries.
const EarlyKeys = 16384

// Early is for a transaction that has committed but is still arriving
// (cdc.Decoder.Early; the caller vouches that it has committed, and should
// do so before the first change): once it holds EarlyKeys exact keys not
// handed on yet, it returns the first EarlyKeys of them as a finished
// transaction of their own, with no messages, and ok. Past the key bound
// such a transaction keeps deleting exact keys (ADR 27): a part then holds
// every key not handed on yet, and those past the bound are forgotten
// once handed on. Deleting them cannot wait for anything: the data they
// cache has committed. The keys stay in t (a later change rendering one
// again adds nothing, and the messages and journal entry list every key);
// t's Result marks them Unlinked. A transaction with streamed
// subtransactions, which may still abort, is never split.
func (t *Txn) Early() (*Txn, bool) {
	if t.result != nil || len(t.subs) > 0 {
		return nil, false
	}
	t.committed = true
	n, over := t.main.keyList.len(), t.over.keys.len()
	if n-t.early+over < EarlyKeys {
		return nil, false
	}
	take := EarlyKeys
	if over > 0 { // past the bound: the rest of the listed keys, then the overflow
		take = n - t.early
	}
	if take > 0 && len(t.strs.cur) > 0 {
		t.strs.flush() // every key so far into a finished chunk, readable by str
	}
	keys := make([]string, 0, take+over)
	for i := t.early; i < t.early+take; i++ {
		keys = append(keys, str(t.strs.done, t.main.keyRef(int32(i))))
	}
	t.early += take
	if over > 0 {
		keys = t.over.appendTo(keys)
		t.over = overflow{} // handed on: the part's keys keep its chunks
	}
	return t.rt.Finished(&Result{Keys: keys, names: t.rt.names}), true
}

// appendTo appends the overflow's keys to keys; nothing can be added to
// the overflow afterwards.
func (o *overflow) appendTo(keys []string) []string {
	o.strs.finish()
	o.keys.each(func(r sref) { keys = append(keys, str(o.strs.done, r)) })
	return keys
}

// Commit implements cdc.Txn: it finishes the transaction, computing its
// Result and dropping the accumulation maps, so a transaction waiting in
// the queue holds only its final lists. The Txn must not be added to
// afterwards. A second Commit does nothing.
func (t *Txn) Commit() {
	if t.result != nil {
		return
	}
	t.result = t.finish()
	// the accumulation lists are no longer needed
	// (t.strs stays: its first chunk may be the result's)
	t.main, t.subs, t.buf, t.subj, t.newImg, t.oldImg = part{}, nil, nil, nil, nil, nil
	t.over = overflow{}
	t.lastRel, t.lastRules = nil, nil
}

// Result returns what the committed transaction invalidates (the same
// Result on every call); it changes nothing, and is nil before Commit.
func (t *Txn) Result() *Result { return t.result }

// finish computes the Result of the whole transaction.
func (t *Txn) finish() *Result {
	t.strs.finish()
	res := t.partResult(&t.main)
	res.Unlinked = t.early
	if t.over.keys.len() > 0 { // past the bound, not handed on: deleted with the rest
		res.Keys = t.over.appendTo(res.Keys)
	}
	wide := func(p *part) {
		for _, r := range t.rt.rules.Rules {
			w := p.wide[r]
			switch {
			case w == nil:
			case w.exact && !slices.Contains(res.PastBound, r.Name):
				res.PastBound = append(res.PastBound, r.Name)
			case !w.exact && !slices.Contains(res.Wide, r.Name):
				res.Wide = append(res.Wide, r.Name)
			}
		}
	}
	wide(&t.main)
	if len(t.subs) > 0 {
		res = t.mergeSubs(res, wide)
	}
	return res
}

// partResult is what one part invalidates, its strings finished.
func (t *Txn) partResult(p *part) *Result {
	res := &Result{Patterns: p.patList, Namespaces: p.nsList, Changes: p.changes, Counts: p.counts,
		chunks: t.strs.done, msgs: p.msgs, subj: p.subj, msgPats: p.msgPats, msgNS: p.msgNS, names: t.rt.names}
	for _, c := range p.covList {
		if _, scanned := p.patterns[c]; !scanned { // became a scanned pattern later
			res.Covered = append(res.Covered, c)
		}
	}
	if n := p.keyList.len(); n > 0 {
		res.Keys = make([]string, 0, n)
		p.keyList.each(func(r sref) { res.Keys = append(res.Keys, str(res.chunks, r)) })
	}
	for msg, keys := range p.spill {
		m := res.msgs.at(msg)
		m.lo = int32(len(res.msgKeys))
		for _, k := range keys {
			res.msgKeys = append(res.msgKeys, res.Keys[k])
		}
		m.hi = int32(len(res.msgKeys))
	}
	return res
}

// mergeSubs adds the streamed subtransactions that committed, in xid order,
// to the main part's result: each key and pattern once, and one message
// per channel (the last op, every key and pattern).
func (t *Txn) mergeSubs(res *Result, wide func(*part)) *Result {
	keys := make(map[string]struct{}, len(res.Keys))
	for _, k := range res.Keys {
		keys[k] = struct{}{}
	}
	pats := t.main.patterns
	if pats == nil {
		pats = map[string]struct{}{}
	}
	nss := t.main.ns
	if nss == nil {
		nss = map[string]struct{}{}
	}
	msgs := res.Messages()
	msgIdx := make(map[string]int, len(msgs))
	for i, m := range msgs {
		msgIdx[m.Channel] = i
	}
	xids := make([]uint32, 0, len(t.subs))
	for x := range t.subs {
		xids = append(xids, x)
	}
	slices.Sort(xids)
	for _, x := range xids {
		p := t.subs[x]
		sub := t.partResult(p)
		res.Changes += p.changes
		res.Counts = append(res.Counts, p.counts...)
		wide(p)
		for _, k := range sub.Keys {
			if _, ok := keys[k]; !ok {
				keys[k] = struct{}{}
				res.Keys = append(res.Keys, k)
			}
		}
		for _, pt := range p.patList {
			if _, ok := pats[pt]; !ok {
				pats[pt] = struct{}{}
				res.Patterns = append(res.Patterns, pt)
			}
		}
		for _, ns := range p.nsList {
			if _, ok := nss[ns]; !ok {
				nss[ns] = struct{}{}
				res.Namespaces = append(res.Namespaces, ns)
			}
		}
		for i := range sub.NumMessages() {
			m := sub.Message(i)
			if j, ok := msgIdx[m.Channel]; ok {
				dst := &msgs[j]
				dst.Op, dst.Rule, dst.Table = m.Op, m.Rule, m.Table
				dst.Keys = appendNew(dst.Keys, m.Keys)
				dst.Patterns = appendNew(dst.Patterns, m.Patterns)
				dst.Namespaces = appendNew(dst.Namespaces, m.Namespaces)
				continue
			}
			msgIdx[m.Channel] = len(msgs)
			msgs = append(msgs, m)
		}
	}
	merged := &Result{Keys: res.Keys, Unlinked: res.Unlinked, Patterns: res.Patterns, Covered: res.Covered, Namespaces: res.Namespaces,
		Changes: res.Changes, Counts: res.Counts, Wide: res.Wide, PastBound: res.PastBound, names: t.rt.names}
	for _, m := range msgs {
		merged.AddMessage(m)
	}
	return merged
}

// appendNew appends the strings of src that dst lacks, in linear time.
func appendNew(dst, src []string) []string {
	if len(src) == 0 {
		return dst
	}
	have := make(map[string]struct{}, len(dst)+len(src))
	for _, s := range dst {
		have[s] = struct{}{}
	}
	for _, s := range src {
		if _, ok := have[s]; !ok {
			have[s] = struct{}{}
			dst = append(dst, s)
		}
	}
	return dst
}
