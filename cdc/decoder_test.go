package cdc_test

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cachewire/invalidator/cdc"
)

// msg builds pgoutput messages byte by byte.
type msg []byte

func m(kind byte) msg           { return msg{kind} }
func (b msg) u8(v byte) msg     { return append(b, v) }
func (b msg) u16(v uint16) msg  { return binary.BigEndian.AppendUint16(b, v) }
func (b msg) u32(v uint32) msg  { return binary.BigEndian.AppendUint32(b, v) }
func (b msg) u64(v uint64) msg  { return binary.BigEndian.AppendUint64(b, v) }
func (b msg) str(s string) msg  { return append(append(b, s...), 0) }
func (b msg) text(s string) msg { return b.u8('t').u32(uint32(len(s))).raw(s) }
func (b msg) raw(s string) msg  { return append(b, s...) }
func (b msg) null() msg         { return b.u8('n') }
func (b msg) unchanged() msg    { return b.u8('u') }
func (b msg) tuple(cols ...msg) msg {
	b = b.u16(uint16(len(cols)))
	for _, c := range cols {
		b = append(b, c...)
	}
	return b
}

func txt(s string) msg { return msg{}.text(s) }
func null() msg        { return msg{}.null() }
func unch() msg        { return msg{}.unchanged() }

var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pgTime(tm time.Time) uint64 { return uint64(tm.Sub(pgEpoch) / time.Microsecond) }

func begin(final uint64, xid uint32) msg {
	return m('B').u64(final).u64(pgTime(time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC))).u32(xid)
}

func commit(lsn, end uint64) msg {
	return m('C').u8(0).u64(lsn).u64(end).u64(pgTime(time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)))
}

// relation describes public.shards(tenant_id key, id key, payload).
func relation(id uint32, extra ...string) msg {
	b := m('R').u32(id).str("public").str("shards").u8('d').u16(uint16(3 + len(extra)))
	b = b.u8(1).str("tenant_id").u32(25).u32(0xffffffff)
	b = b.u8(1).str("id").u32(23).u32(0xffffffff)
	b = b.u8(0).str("payload").u32(25).u32(0xffffffff)
	for _, e := range extra {
		b = b.u8(0).str(e).u32(25).u32(0xffffffff)
	}
	return b
}

// recTxn records copies of the changes it is given.
type recTxn struct {
	committed bool
	xid       uint32
	changes   []rec
	discarded []uint32
}

type rec struct {
	op       cdc.Op
	xid      uint32
	table    string
	cols     []string
	oldKind  byte
	old, new []string // "<kind>:<data>"
	trunc    []string
}

func tupleStrings(tp cdc.Tuple) []string {
	var out []string
	for _, d := range tp {
		out = append(out, string(d.Kind)+":"+string(d.Data))
	}
	return out
}

func (r *recTxn) Add(c *cdc.Change) {
	x := rec{op: c.Op, xid: c.Xid, oldKind: c.OldKind, old: tupleStrings(c.Old), new: tupleStrings(c.New)}
	if c.Rel != nil {
		x.table = c.Rel.QualifiedName()
		for _, col := range c.Rel.Columns {
			x.cols = append(x.cols, col.Name)
		}
	}
	for _, rel := range c.Truncated {
		x.trunc = append(x.trunc, rel.QualifiedName())
	}
	r.changes = append(r.changes, x)
}

func (r *recTxn) DiscardSub(subxid uint32) { r.discarded = append(r.discarded, subxid) }

func (r *recTxn) Commit() { r.committed = true }

func newDecoder() *cdc.Decoder[*recTxn] {
	return cdc.NewDecoder(func(xid uint32) *recTxn { return &recTxn{xid: xid} })
}

// feed decodes every message and returns the committed transactions.
func feed(tb testing.TB, d *cdc.Decoder[*recTxn], msgs ...msg) []cdc.Committed[*recTxn] {
	tb.Helper()
	var out []cdc.Committed[*recTxn]
	for i, b := range msgs {
		c, ok, err := d.Decode(b)
		if err != nil {
			tb.Fatalf("message %d (%q): %v", i, b[0], err)
		}
		if ok {
			out = append(out, c)
		}
	}
	return out
}

func TestDecoder_RowChanges(t *testing.T) {
	d := newDecoder()
	got := feed(t, d,
		relation(16384),
		begin(0x300, 700),
		m('I').u32(16384).u8('N').tuple(txt("t1"), txt("42"), txt("hello")),
		m('U').u32(16384).u8('O').tuple(txt("t1"), txt("42"), txt("hello")).u8('N').tuple(txt("t2"), txt("42"), unch()),
		m('U').u32(16384).u8('K').tuple(txt("t1"), txt("43"), null()).u8('N').tuple(txt("t1"), txt("44"), txt("x")),
		m('U').u32(16384).u8('N').tuple(txt("t1"), txt("45"), null()),
		m('D').u32(16384).u8('K').tuple(txt("t1"), txt("46"), null()),
		commit(0x300, 0x330),
	)
	if len(got) != 1 {
		t.Fatalf("got %d committed transactions, want 1", len(got))
	}
	c := got[0]
	if c.Xid != 700 || c.CommitLSN != 0x300 || c.EndLSN != 0x330 || c.Txn.xid != 700 {
		t.Errorf("commit = xid %d lsn %s end %s", c.Xid, c.CommitLSN, c.EndLSN)
	}
	if want := time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC); !c.CommitTime.Equal(want) {
		t.Errorf("commit time %s, want %s", c.CommitTime, want)
	}
	want := []rec{
		{op: cdc.OpInsert, xid: 700, table: "public.shards", new: []string{"t:t1", "t:42", "t:hello"}},
		{op: cdc.OpUpdate, xid: 700, table: "public.shards", oldKind: 'O', old: []string{"t:t1", "t:42", "t:hello"}, new: []string{"t:t2", "t:42", "u:"}},
		{op: cdc.OpUpdate, xid: 700, table: "public.shards", oldKind: 'K', old: []string{"t:t1", "t:43", "n:"}, new: []string{"t:t1", "t:44", "t:x"}},
		{op: cdc.OpUpdate, xid: 700, table: "public.shards", new: []string{"t:t1", "t:45", "n:"}},
		{op: cdc.OpDelete, xid: 700, table: "public.shards", oldKind: 'K', old: []string{"t:t1", "t:46", "n:"}},
	}
	if len(c.Txn.changes) != len(want) {
		t.Fatalf("got %d changes, want %d", len(c.Txn.changes), len(want))
	}
	for i, w := range want {
		g := c.Txn.changes[i]
		if g.op != w.op || g.xid != w.xid || g.table != w.table || g.oldKind != w.oldKind || !slices.Equal(g.old, w.old) || !slices.Equal(g.new, w.new) {
			t.Errorf("change %d = %+v, want %+v", i, g, w)
		}
	}
	if d.Busy() {
		t.Error("decoder busy after commit")
	}
	if !c.Txn.committed {
		t.Error("Txn.Commit was not called before the transaction was handed on")
	}
}

func TestDecoder_Truncate(t *testing.T) {
	d := newDecoder()
	other := m('R').u32(2).str("").str("pg_thing").u8('d').u16(1).u8(1).str("id").u32(23).u32(0)
	got := feed(t, d, relation(1), other, begin(0x10, 5), m('T').u32(3).u8(1).u32(1).u32(2).u32(99), commit(0x10, 0x20))
	if len(got) != 1 || len(got[0].Txn.changes) != 1 {
		t.Fatalf("got %+v", got)
	}
	// an empty namespace means pg_catalog; an unknown relation id is skipped
	if ch := got[0].Txn.changes[0]; ch.op != cdc.OpTruncate || !slices.Equal(ch.trunc, []string{"public.shards", "pg_catalog.pg_thing"}) {
		t.Errorf("truncate change = %+v", ch)
	}
}

func TestDecoder_RelationChangesMidStream(t *testing.T) {
	d := newDecoder()
	got := feed(t, d,
		relation(7),
		begin(0x10, 1), m('I').u32(7).u8('N').tuple(txt("a"), txt("1"), txt("p")), commit(0x10, 0x18),
		relation(7, "added"),
		begin(0x20, 2), m('I').u32(7).u8('N').tuple(txt("a"), txt("2"), txt("p"), txt("new")), commit(0x20, 0x28),
	)
	if len(got) != 2 {
		t.Fatalf("got %d transactions", len(got))
	}
	if cols := got[1].Txn.changes[0].cols; !slices.Equal(cols, []string{"tenant_id", "id", "payload", "added"}) {
		t.Errorf("columns after the schema change: %v", cols)
	}
	if cols := got[0].Txn.changes[0].cols; len(cols) != 3 {
		t.Errorf("columns before the schema change: %v", cols)
	}
}

func TestDecoder_StreamedTransactions(t *testing.T) {
	ins := func(xid uint32, id string) msg {
		return m('I').u32(xid).u32(16384).u8('N').tuple(txt("t1"), txt(id), null())
	}
	start := func(xid uint32, first byte) msg { return m('S').u32(xid).u8(first) }
	stop := m('E')
	streamCommit := func(xid uint32, lsn uint64) msg {
		return m('c').u32(xid).u8(0).u64(lsn).u64(lsn + 8).u64(pgTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	}
	t.Run("interleaved chunks commit in order", func(t *testing.T) {
		d := newDecoder()
		got := feed(t, d,
			relation(16384),
			start(10, 1), ins(10, "1"), stop,
			start(20, 1), ins(20, "2"), stop,
			start(10, 0), ins(10, "3"), stop,
		)
		if len(got) != 0 || !d.Busy() || d.OpenStreams() != 2 {
			t.Fatalf("before commit: %d committed, busy %v, open %d", len(got), d.Busy(), d.OpenStreams())
		}
		got = feed(t, d, streamCommit(10, 0x500))
		if len(got) != 1 || got[0].Xid != 10 || len(got[0].Txn.changes) != 2 || got[0].EndLSN != 0x508 {
			t.Fatalf("stream commit: %+v", got)
		}
		if d.OpenStreams() != 1 {
			t.Errorf("open streams %d, want 1", d.OpenStreams())
		}
	})
	t.Run("abort drops the transaction", func(t *testing.T) {
		d := newDecoder()
		got := feed(t, d, relation(16384), start(10, 1), ins(10, "1"), stop, m('A').u32(10).u32(10))
		if len(got) != 0 || d.Busy() {
			t.Errorf("aborted stream: %d committed, busy %v", len(got), d.Busy())
		}
		// a commit for it can no longer produce anything
		if got := feed(t, d, streamCommit(10, 0x900)); len(got) != 0 {
			t.Errorf("commit after abort produced %+v", got)
		}
	})
	t.Run("subtransaction abort discards only it", func(t *testing.T) {
		d := newDecoder()
		got := feed(t, d, relation(16384), start(10, 1), ins(10, "1"), ins(11, "2"), stop,
			m('A').u32(10).u32(11), start(10, 0), ins(10, "3"), stop, streamCommit(10, 0x600))
		if len(got) != 1 {
			t.Fatalf("got %d committed", len(got))
		}
		if !slices.Equal(got[0].Txn.discarded, []uint32{11}) {
			t.Errorf("discarded %v, want [11]", got[0].Txn.discarded)
		}
		var xids []uint32
		for _, c := range got[0].Txn.changes {
			xids = append(xids, c.xid)
		}
		if !slices.Equal(xids, []uint32{10, 11, 10}) {
			t.Errorf("change xids %v: changes must carry their subtransaction", xids)
		}
	})
}

func TestDecoder_SkipThrough(t *testing.T) {
	d := newDecoder()
	d.SkipThrough(0x200)
	got := feed(t, d,
		relation(1),
		begin(0x100, 1), m('I').u32(1).u8('N').tuple(txt("a"), txt("1"), null()), commit(0x100, 0x108),
		begin(0x200, 2), commit(0x200, 0x208),
		m('S').u32(3).u8(1), m('E'), m('c').u32(3).u8(0).u64(0x150).u64(0x158).u64(0),
		begin(0x300, 4), m('I').u32(1).u8('N').tuple(txt("a"), txt("2"), null()), commit(0x300, 0x308),
	)
	if len(got) != 1 || got[0].Xid != 4 || len(got[0].Txn.changes) != 1 {
		t.Errorf("after SkipThrough(0x200) got %+v, want only xid 4", got)
	}
}

func TestDecoder_Messages(t *testing.T) {
	d := newDecoder()
	var gotPrefix, gotContent string
	var gotLSN cdc.LSN
	d.OnMessage = func(transactional bool, lsn cdc.LSN, prefix string, content []byte) {
		gotPrefix, gotContent, gotLSN = prefix, string(content), lsn
	}
	var unknown []uint32
	d.OnUnknownRelation = func(id uint32) { unknown = append(unknown, id) }
	feed(t, d, m('M').u8(0).u64(0x42).str("invalidator").u32(5).raw("hello"),
		begin(0x10, 1), m('I').u32(77).u8('N').tuple(txt("x")), commit(0x10, 0x18))
	if gotPrefix != "invalidator" || gotContent != "hello" || gotLSN != 0x42 {
		t.Errorf("message = %q %q %s", gotPrefix, gotContent, gotLSN)
	}
	if !slices.Equal(unknown, []uint32{77}) {
		t.Errorf("unknown relations %v, want [77]", unknown)
	}
}

func TestDecoder_Malformed(t *testing.T) {
	valid := [][]byte{
		relation(1), begin(1, 1), m('I').u32(1).u8('N').tuple(txt("a"), txt("1"), txt("p")),
		m('U').u32(1).u8('O').tuple(txt("a"), txt("1"), txt("p")).u8('N').tuple(txt("a"), txt("1"), txt("q")),
		commit(1, 2),
	}
	for i, v := range valid {
		for cut := 1; cut < len(v); cut++ {
			d := newDecoder()
			if i > 0 {
				feed(t, d, relation(1), begin(1, 1))
			}
			_, _, err := d.Decode(v[:cut])
			if i == 1 || i == 4 || err == nil {
				// begin and commit are decoded from fixed fields; others may end early
				if err != nil && !errors.Is(err, cdc.ErrMalformed) {
					t.Errorf("message %d cut at %d: %v is not ErrMalformed", i, cut, err)
				}
				continue
			}
			if !errors.Is(err, cdc.ErrMalformed) {
				t.Errorf("message %d cut at %d: %v is not ErrMalformed", i, cut, err)
			}
		}
	}
	if _, _, err := newDecoder().Decode([]byte{'Z'}); !errors.Is(err, cdc.ErrMalformed) {
		t.Errorf("unknown type: %v", err)
	}
	if _, _, err := newDecoder().Decode(m('I').u32(1).u8('N').u16(1).u8('x')); !errors.Is(err, cdc.ErrMalformed) {
		t.Errorf("bad datum kind: %v", err)
	}
}

func FuzzDecoder(f *testing.F) {
	f.Add([]byte(relation(1)), []byte(m('I').u32(1).u8('N').tuple(txt("a"), txt("1"), null())))
	f.Add([]byte(m('S').u32(1).u8(1)), []byte(m('U').u32(1).u32(1).u8('K').tuple(txt("a"))))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d := newDecoder()
		_, _, _ = d.Decode(relation(1))
		_, _, _ = d.Decode(begin(1, 1))
		_, _, _ = d.Decode(a) // must not panic, whatever the bytes
		_, _, _ = d.Decode(b)
	})
}

// TestDecoder_Early: a transaction that is not streamed is split where
// Early says, each part marked Early with the commit LSN and time from
// Begin and nothing to confirm; streamed and skipped transactions never are.
func TestDecoder_Early(t *testing.T) {
	ins := func(id string) msg { return m('I').u32(1).u8('N').tuple(txt("a"), txt(id), null()) }
	// split off every two changes
	split := func(r *recTxn) (*recTxn, bool) {
		if len(r.changes) < 2 {
			return nil, false
		}
		part := &recTxn{xid: r.xid, changes: r.changes}
		r.changes = nil
		return part, true
	}
	d := newDecoder()
	d.Early = split
	d.SkipThrough(0x100)
	// Begin's commit time, not a later one, is the parts' (here Commit's
	// says otherwise, to tell them apart)
	laterCommit := m('C').u8(0).u64(0x300).u64(0x308).u64(pgTime(time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)))
	got := feed(t, d, relation(1),
		begin(0x100, 1), ins("0"), ins("1"), ins("2"), commit(0x100, 0x108), // already handed on: skipped
		begin(0x300, 7), ins("1"), ins("2"), ins("3"), ins("4"), ins("5"), laterCommit,
		m('S').u32(9).u8(1), m('I').u32(9).u32(1).u8('N').tuple(txt("a"), txt("6"), null()),
		m('I').u32(9).u32(1).u8('N').tuple(txt("a"), txt("7"), null()), m('E'),
		m('c').u32(9).u8(0).u64(0x400).u64(0x408).u64(0),
	)
	wantTime := time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)
	type summary struct {
		early         bool
		xid           uint32
		commit, end   cdc.LSN
		changes       int
		timeFromBegin bool
	}
	var sums []summary
	for _, c := range got {
		sums = append(sums, summary{c.Early, c.Xid, c.CommitLSN, c.EndLSN, len(c.Txn.changes), c.CommitTime.Equal(wantTime)})
	}
	want := []summary{
		{true, 7, 0x300, 0, 2, true},
		{true, 7, 0x300, 0, 2, true},
		{false, 7, 0x300, 0x308, 1, false},
		{false, 9, 0x400, 0x408, 2, false},
	}
	if !slices.Equal(sums, want) {
		t.Errorf("handed on\n got %+v\nwant %+v", sums, want)
	}
	for _, c := range got {
		if c.Early && c.Txn.committed {
			t.Errorf("an early part was committed as a transaction: %+v", c)
		}
	}
}
