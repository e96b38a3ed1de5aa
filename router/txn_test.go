package router_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/router"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// ---- relations, rows and changes ----

type column struct {
	name string
	key  bool // part of the replica identity
}

// newRelation builds a relation description the way the daemon gets one:
// by decoding a pgoutput Relation ('R') message.
func newRelation(tb testing.TB, id uint32, namespace, name string, cols ...column) *cdc.Relation {
	tb.Helper()
	msg := []byte{'R'}
	msg = binary.BigEndian.AppendUint32(msg, id)
	msg = append(append(msg, namespace...), 0)
	msg = append(append(msg, name...), 0)
	msg = append(msg, 'd') // replica identity default
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(cols)))
	for _, c := range cols {
		var flags byte
		if c.key {
			flags = 1
		}
		msg = append(msg, flags)
		msg = append(append(msg, c.name...), 0)
		msg = binary.BigEndian.AppendUint32(msg, 25)         // text
		msg = binary.BigEndian.AppendUint32(msg, 0xFFFFFFFF) // typmod -1
	}
	d := cdc.NewDecoder(func(uint32) *router.Txn { return nil })
	if _, _, err := d.Decode(msg); err != nil {
		tb.Fatalf("decode relation message: %v", err)
	}
	rel := d.Relation(id)
	if rel == nil {
		tb.Fatalf("relation %d not known after its Relation message", id)
	}
	if got, want := rel.QualifiedName(), namespace+"."+name; got != want {
		tb.Fatalf("QualifiedName() = %q, want %q", got, want)
	}
	return rel
}

func shardsRel(tb testing.TB) *cdc.Relation {
	tb.Helper()
	return newRelation(tb, 16385, "public", "shards",
		column{"id", true}, column{"tenant_id", false}, column{"title", false}, column{"payload", false})
}

func usersRel(tb testing.TB) *cdc.Relation {
	tb.Helper()
	return newRelation(tb, 16390, "public", "users",
		column{"id", true}, column{"tenant_id", false}, column{"nick", false}, column{"email", false})
}

// toast stands for an unchanged TOASTed value (not sent by pgoutput).
type toast struct{}

// row builds a tuple: a string is a text value, nil is NULL, toast{} is an
// unchanged TOAST value.
func row(tb testing.TB, vals ...any) cdc.Tuple {
	tb.Helper()
	t := make(cdc.Tuple, len(vals))
	for i, v := range vals {
		switch v := v.(type) {
		case nil:
			t[i] = cdc.Datum{Kind: cdc.DatumNull}
		case toast:
			t[i] = cdc.Datum{Kind: cdc.DatumUnchanged}
		case string:
			t[i] = cdc.Datum{Kind: cdc.DatumText, Data: []byte(v)}
		default:
			tb.Fatalf("row: unsupported value %T", v)
		}
	}
	return t
}

func insert(rel *cdc.Relation, newRow cdc.Tuple) *cdc.Change {
	return &cdc.Change{Op: cdc.OpInsert, Rel: rel, New: newRow}
}

func updateChange(rel *cdc.Relation, oldKind byte, oldRow, newRow cdc.Tuple) *cdc.Change {
	return &cdc.Change{Op: cdc.OpUpdate, Rel: rel, OldKind: oldKind, Old: oldRow, New: newRow}
}

func deleteChange(rel *cdc.Relation, oldKind byte, oldRow cdc.Tuple) *cdc.Change {
	return &cdc.Change{Op: cdc.OpDelete, Rel: rel, OldKind: oldKind, Old: oldRow}
}

// ---- observer ----

type skip struct {
	Rule, Table, Column string
	First               bool
}

type noRule struct {
	Table string
	First bool
}

type recorder struct {
	calls   []skip
	noRules []noRule
}

func (r *recorder) RenderSkipped(rule, table, column string, first bool) {
	r.calls = append(r.calls, skip{rule, table, column, first})
}

func (r *recorder) NoRule(table string, first bool) {
	r.noRules = append(r.noRules, noRule{table, first})
}

// run feeds changes to a new transaction of rt and returns its result.
func run(tb testing.TB, rt *router.Router, xid uint32, changes ...*cdc.Change) *router.Result {
	tb.Helper()
	txn := rt.NewTxn(xid)
	for _, c := range changes {
		txn.Add(c)
	}
	txn.Commit()
	res := txn.Result()
	if res == nil {
		tb.Fatal("Result() = nil")
	}
	return res
}

// ---- golden files ----

type goldenMessage struct {
	Channel  string   `json:"channel"`
	Op       string   `json:"op"`
	Table    string   `json:"table"`
	Rule     string   `json:"rule"`
	Keys     []string `json:"keys"`
	Patterns []string `json:"patterns,omitempty"`
}

type goldenCount struct {
	Table string `json:"table"`
	Op    string `json:"op"`
	N     int    `json:"n"`
}

type goldenResult struct {
	Keys     []string        `json:"keys"`
	Patterns []string        `json:"patterns"`
	Messages []goldenMessage `json:"messages"`
	Changes  int             `json:"changes"`
	Counts   []goldenCount   `json:"counts"`
	Wide     []string        `json:"wide"`
}

func resultJSON(tb testing.TB, res *router.Result) []byte {
	tb.Helper()
	g := goldenResult{
		Keys: nonNil(res.Keys), Patterns: nonNil(res.Patterns), Messages: []goldenMessage{},
		Changes: res.Changes, Counts: []goldenCount{}, Wide: nonNil(res.Wide),
	}
	for _, m := range res.Messages() {
		g.Messages = append(g.Messages, goldenMessage{
			Channel: m.Channel, Op: m.Op.String(), Table: m.Table, Rule: m.Rule,
			Keys: nonNil(m.Keys), Patterns: m.Patterns,
		})
	}
	for _, c := range res.Counts {
		g.Counts = append(g.Counts, goldenCount{Table: c.Table, Op: c.Op.String(), N: c.N})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(g); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// checkGolden compares res with testdata/<name>.golden; go test -update
// rewrites the file.
func checkGolden(tb testing.TB, name string, res *router.Result) {
	tb.Helper()
	got := resultJSON(tb, res)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("result differs from %s (go test -update rewrites it)\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// ---- assertions ----

// renderRouter returns a router for testdata/render_rules.yaml.
func renderRouter(tb testing.TB, maxKeys int, obs router.Observer) *router.Router {
	tb.Helper()
	return router.New(loadRules(tb, "render_rules.yaml"), maxKeys, obs)
}

func wantStrings(tb testing.TB, what string, got, want []string) {
	tb.Helper()
	if !slices.Equal(got, want) {
		tb.Errorf("%s = %q, want %q", what, got, want)
	}
}

func findMessage(tb testing.TB, res *router.Result, channel string) router.Message {
	tb.Helper()
	for _, m := range res.Messages() {
		if m.Channel == channel {
			return m
		}
	}
	var chans []string
	for _, m := range res.Messages() {
		chans = append(chans, m.Channel)
	}
	tb.Fatalf("no message on channel %q (channels: %q)", channel, chans)
	return router.Message{}
}

func channels(res *router.Result) []string {
	var out []string
	for _, m := range res.Messages() {
		out = append(out, m.Channel)
	}
	return out
}

// covered reports whether key is deleted by res: listed exactly or matched
// by one of its MATCH patterns.
func covered(res *router.Result, key string) bool {
	if slices.Contains(res.Keys, key) {
		return true
	}
	for _, p := range res.Patterns {
		if redisMatch(p, key) {
			return true
		}
	}
	return false
}

// ---- tests ----

func TestTxn_Result_Operations(t *testing.T) {
	shards := shardsRel(t)
	tests := []struct {
		name     string
		change   func(tb testing.TB) *cdc.Change
		keys     []string
		patterns []string
		msg      router.Message
	}{
		{
			name:     "insert",
			change:   func(tb testing.TB) *cdc.Change { return insert(shards, row(tb, "42", "t1", "title", "p")) },
			keys:     []string{"app:tenant:t1:shard:42:structured"},
			patterns: []string{"app:tenant:t1:vsearch:*"},
			msg: router.Message{Channel: "shard:t1:42", Op: cdc.OpInsert, Table: "public.shards", Rule: "shard-structured",
				Keys: []string{"app:tenant:t1:shard:42:structured"}, Patterns: []string{"app:tenant:t1:vsearch:*"}},
		},
		{
			name: "update",
			change: func(tb testing.TB) *cdc.Change {
				return updateChange(shards, cdc.OldNone, nil, row(tb, "42", "t1", "title", "p2"))
			},
			// no old image: the changed: [payload] rule cannot tell, so it fires
			keys:     []string{"app:tenant:t1:shard:42:structured", "app:tenant:t1:shard:42:payload"},
			patterns: []string{"app:tenant:t1:vsearch:*"},
			msg: router.Message{Channel: "shard:t1:42", Op: cdc.OpUpdate, Table: "public.shards", Rule: "shard-structured",
				Keys: []string{"app:tenant:t1:shard:42:structured"}, Patterns: []string{"app:tenant:t1:vsearch:*"}},
		},
		{
			name: "delete",
			change: func(tb testing.TB) *cdc.Change {
				return deleteChange(shards, cdc.OldFull, row(tb, "42", "t1", "title", "p"))
			},
			keys:     []string{"app:tenant:t1:shard:42:structured"},
			patterns: []string{"app:tenant:t1:vsearch:*"},
			msg: router.Message{Channel: "shard:t1:42", Op: cdc.OpDelete, Table: "public.shards", Rule: "shard-structured",
				Keys: []string{"app:tenant:t1:shard:42:structured"}, Patterns: []string{"app:tenant:t1:vsearch:*"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, renderRouter(t, 0, nil), 7, tt.change(t))
			wantStrings(t, "Keys", res.Keys, tt.keys)
			wantStrings(t, "Patterns", res.Patterns, tt.patterns)
			if len(res.Messages()) != 1 {
				t.Fatalf("got %d messages (%q), want 1", len(res.Messages()), channels(res))
			}
			m := res.Messages()[0]
			if m.Channel != tt.msg.Channel || m.Op != tt.msg.Op || m.Table != tt.msg.Table || m.Rule != tt.msg.Rule {
				t.Errorf("message = %s %s %s %s, want %s %s %s %s", m.Channel, m.Op, m.Table, m.Rule,
					tt.msg.Channel, tt.msg.Op, tt.msg.Table, tt.msg.Rule)
			}
			wantStrings(t, "message keys", m.Keys, tt.msg.Keys)
			wantStrings(t, "message patterns", m.Patterns, tt.msg.Patterns)
			if res.Changes != 1 || len(res.Counts) != 1 || res.Counts[0] != (router.ChangeCount{Table: "public.shards", Op: tt.msg.Op, N: 1}) {
				t.Errorf("Changes = %d, Counts = %+v; want 1 change of public.shards %s", res.Changes, res.Counts, tt.msg.Op)
			}
			if len(res.Wide) != 0 || res.Empty() {
				t.Errorf("Wide = %q, Empty() = %v; want no wide rule and a non-empty result", res.Wide, res.Empty())
			}
			checkGolden(t, "op_"+tt.name, res)
		})
	}
}

func TestTxn_Result_UpdateMovesTenant(t *testing.T) {
	shards := shardsRel(t)
	obs := &recorder{}
	res := run(t, renderRouter(t, 0, obs), 7,
		updateChange(shards, cdc.OldFull, row(t, "42", "t1", "title", "old"), row(t, "42", "t2", "title", "new")))

	for _, k := range []string{
		"app:tenant:t1:shard:42:structured", "app:tenant:t2:shard:42:structured",
		"app:tenant:t1:shard:42:payload", "app:tenant:t2:shard:42:payload",
	} {
		if !slices.Contains(res.Keys, k) {
			t.Errorf("Keys %q lack %q", res.Keys, k)
		}
	}
	for _, p := range []string{"app:tenant:t1:vsearch:*", "app:tenant:t2:vsearch:*"} {
		if !slices.Contains(res.Patterns, p) {
			t.Errorf("Patterns %q lack %q", res.Patterns, p)
		}
	}
	for _, tenant := range []string{"t1", "t2"} {
		m := findMessage(t, res, "shard:"+tenant+":42")
		if m.Op != cdc.OpUpdate || m.Rule != "shard-structured" {
			t.Errorf("message %s: op %s rule %s, want update shard-structured", m.Channel, m.Op, m.Rule)
		}
		wantStrings(t, "keys of "+m.Channel, m.Keys, []string{"app:tenant:" + tenant + ":shard:42:structured"})
	}
	if len(obs.calls) != 0 {
		t.Errorf("RenderSkipped calls %+v, want none", obs.calls)
	}
	checkGolden(t, "update_moves_tenant", res)
}

func TestTxn_Result_UpdateOldKeyImage(t *testing.T) {
	users := usersRel(t)
	obs := &recorder{}
	// The primary key changed from 1 to 2: pgoutput sends the old key only.
	res := run(t, renderRouter(t, 0, obs), 7,
		updateChange(users, cdc.OldKey, row(t, "1", nil, nil, nil), row(t, "2", "t1", "ann", "ann@example.com")))

	// The new row renders exactly; of the old row only id is known, so its
	// other columns are unknown (they may have changed too) and the old
	// place is flushed by patterns that keep the id and star the rest.
	wantStrings(t, "Keys", res.Keys, []string{
		"app:tenant:t1:user:2:profile", "app:tenant:t1:nick:ann",
	})
	wantStrings(t, "Patterns", res.Patterns, []string{"app:tenant:*:user:1:profile", "app:tenant:*:nick:*"})
	wantStrings(t, "channels", channels(res), []string{"user:t1:2", "user:*:1"})
	if len(obs.calls) == 0 || obs.calls[0].Column != "tenant_id" {
		t.Errorf("RenderSkipped calls %+v, want the unknown tenant_id reported", obs.calls)
	}
	checkGolden(t, "update_old_key", res)
}

func TestTxn_Result_DeleteOldKeyImage(t *testing.T) {
	users := usersRel(t)
	obs := &recorder{}
	// DELETE under REPLICA IDENTITY DEFAULT: only id is known. The keys
	// exist in the cache, so they are flushed by patterns that keep the id
	// and star the unknown tenant: reported, never guessed, never skipped.
	res := run(t, renderRouter(t, 0, obs), 7, deleteChange(users, cdc.OldKey, row(t, "1", nil, nil, nil)))
	if len(res.Keys) != 0 {
		t.Errorf("Keys = %q, want none (nothing exact is known)", res.Keys)
	}
	wantStrings(t, "Patterns", res.Patterns, []string{"app:tenant:*:user:1:profile", "app:tenant:*:nick:*"})
	if len(obs.calls) == 0 || obs.calls[0] != (skip{"user-profile", "public.users", "tenant_id", true}) {
		t.Errorf("RenderSkipped calls %+v, want first {user-profile public.users tenant_id true}", obs.calls)
	}
}

func TestTxn_Result_Changed(t *testing.T) {
	shards := shardsRel(t)
	const payloadKey = "app:tenant:t1:shard:1:payload"
	tests := []struct {
		name      string
		oldKind   byte
		old, new  []any
		wantFired bool
	}{
		{"OldFull payload equal other column changed", cdc.OldFull,
			[]any{"1", "t1", "a", "p"}, []any{"1", "t1", "b", "p"}, false},
		{"OldFull payload differs", cdc.OldFull,
			[]any{"1", "t1", "a", "p"}, []any{"1", "t1", "a", "q"}, true},
		{"OldFull payload NULL to value", cdc.OldFull,
			[]any{"1", "t1", "a", nil}, []any{"1", "t1", "a", "q"}, true},
		{"OldFull payload value to NULL", cdc.OldFull,
			[]any{"1", "t1", "a", "p"}, []any{"1", "t1", "a", nil}, true},
		{"OldFull payload NULL stays NULL", cdc.OldFull,
			[]any{"1", "t1", "a", nil}, []any{"1", "t1", "b", nil}, false},
		{"OldFull new payload unchanged TOAST", cdc.OldFull,
			[]any{"1", "t1", "a", "p"}, []any{"1", "t1", "b", toast{}}, false},
		{"OldNone cannot tell", cdc.OldNone,
			nil, []any{"1", "t1", "a", "p"}, true},
		{"OldKey without payload cannot tell", cdc.OldKey,
			[]any{"0", nil, nil, nil}, []any{"1", "t1", "a", "p"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old cdc.Tuple
			if tt.old != nil {
				old = row(t, tt.old...)
			}
			res := run(t, renderRouter(t, 0, nil), 7, updateChange(shards, tt.oldKind, old, row(t, tt.new...)))
			if got := slices.Contains(res.Keys, payloadKey); got != tt.wantFired {
				t.Errorf("changed: [payload] rule fired = %v, want %v (keys %q)", got, tt.wantFired, res.Keys)
			}
			// The rule without changed: always fires on an update.
			if !slices.Contains(res.Keys, "app:tenant:t1:shard:1:structured") {
				t.Errorf("Keys %q lack the shard-structured key", res.Keys)
			}
		})
	}
}

func TestTxn_Result_Dedup(t *testing.T) {
	users := usersRel(t)
	r := func(nick string) cdc.Tuple { return row(t, "1", "t1", nick, "e") }
	res := run(t, renderRouter(t, 0, nil), 7,
		insert(users, r("ann")),
		updateChange(users, cdc.OldNone, nil, r("ann")),
		updateChange(users, cdc.OldNone, nil, r("ann")),
	)
	wantStrings(t, "Keys", res.Keys, []string{"app:tenant:t1:user:1:profile", "app:tenant:t1:nick:ann"})
	if len(res.Messages()) != 1 {
		t.Fatalf("messages on %q, want one on user:t1:1", channels(res))
	}
	m := res.Messages()[0]
	if m.Op != cdc.OpUpdate {
		t.Errorf("message op = %s, want update (the last op on the channel)", m.Op)
	}
	wantStrings(t, "message keys", m.Keys, []string{"app:tenant:t1:user:1:profile", "app:tenant:t1:nick:ann"})
	if res.Changes != 3 {
		t.Errorf("Changes = %d, want 3", res.Changes)
	}
	wantCounts := []router.ChangeCount{{Table: "public.users", Op: cdc.OpInsert, N: 1}, {Table: "public.users", Op: cdc.OpUpdate, N: 2}}
	if !slices.Equal(res.Counts, wantCounts) {
		t.Errorf("Counts = %+v, want %+v", res.Counts, wantCounts)
	}
}

// A key shared by several channels is listed once in each message.
func TestTxn_Result_DedupSharedKeyInMessages(t *testing.T) {
	rules := mustParseRules(t, "rules.yaml", []byte(`version: 1
rules:
  - name: items
    table: items
    keys: ["tenant:{tenant_id}:items", "item:{id}"]
    channel: "item:{tenant_id}:{id}"
`))
	items := newRelation(t, 1, "public", "items", column{"id", true}, column{"tenant_id", false})
	res := run(t, router.New(rules, 0, nil), 7,
		insert(items, row(t, "1", "t1")),
		insert(items, row(t, "2", "t1")),
		updateChange(items, cdc.OldNone, nil, row(t, "1", "t1")),
	)
	wantStrings(t, "Keys", res.Keys, []string{"tenant:t1:items", "item:1", "item:2"})
	wantStrings(t, "keys of item:t1:2", findMessage(t, res, "item:t1:2").Keys, []string{"tenant:t1:items", "item:2"})

	m := findMessage(t, res, "item:t1:1")
	if m.Op != cdc.OpUpdate {
		t.Errorf("op of item:t1:1 = %s, want update", m.Op)
	}
	wantStrings(t, "keys of item:t1:1", m.Keys, []string{"tenant:t1:items", "item:1"})
}

func TestTxn_Result_KeyBound(t *testing.T) {
	const maxKeys = 10
	shards := shardsRel(t)
	txn := renderRouter(t, maxKeys, nil).NewTxn(7)
	var all []string // every row's exact key
	for i := 1; i <= 50; i++ {
		tenant := "t" + strconv.Itoa(2-i%2) // t1, t2, t1, ...
		id := strconv.Itoa(i)
		txn.Add(insert(shards, row(t, id, tenant, "title", "p")))
		all = append(all, "app:tenant:"+tenant+":shard:"+id+":structured")
	}
	txn.Commit()
	res := txn.Result()

	if len(res.Keys) > maxKeys {
		t.Errorf("%d exact keys, want at most %d", len(res.Keys), maxKeys)
	}
	for _, p := range []string{
		"app:tenant:t1:shard:*:structured", "app:tenant:t2:shard:*:structured",
		"app:tenant:t1:vsearch:*", "app:tenant:t2:vsearch:*",
	} {
		if !slices.Contains(res.Patterns, p) {
			t.Errorf("Patterns %q lack %q", res.Patterns, p)
		}
	}
	wantStrings(t, "Wide", res.Wide, []string{"shard-structured"})
	for _, k := range all {
		if !covered(res, k) {
			t.Errorf("row key %q is neither listed nor matched by a pattern: lost invalidation", k)
		}
	}
	// The wide form stays bounded by tenant: no other tenant is flushed.
	for _, k := range []string{"app:tenant:t3:shard:1:structured", "app:tenant:t10:shard:1:structured"} {
		if covered(res, k) {
			t.Errorf("key %q of another tenant is deleted by %q", k, res.Patterns)
		}
	}
	if res.Changes != 50 {
		t.Errorf("Changes = %d, want 50", res.Changes)
	}
	checkGolden(t, "key_bound", res)
}

// Past the bound, every distinct scope value adds a wide pattern; past the
// scope bound the rule flushes every value. Memory stays bounded either way.
func TestTxn_Result_KeyBoundManyTenants(t *testing.T) {
	const maxKeys = 10
	shards := shardsRel(t)
	txn := renderRouter(t, maxKeys, nil).NewTxn(7)
	var all []string
	for i := range 2000 {
		tenant := fmt.Sprintf("t%d", i%500)
		id := strconv.Itoa(i)
		txn.Add(insert(shards, row(t, id, tenant, "title", "p")))
		all = append(all, "app:tenant:"+tenant+":shard:"+id+":structured")
	}
	txn.Commit()
	res := txn.Result()
	for _, k := range all {
		if !covered(res, k) {
			t.Fatalf("row key %q is neither listed nor matched by a pattern: lost invalidation", k)
		}
	}
	if !slices.Contains(res.Patterns, "app:tenant:*:shard:*:structured") {
		t.Errorf("Patterns %q lack the unscoped wide pattern", res.Patterns)
	}
	// A generous bound: the key bound plus a few entries per tracked scope.
	if n := len(res.Keys) + len(res.Patterns) + len(res.Messages()); n > 200 {
		t.Errorf("result holds %d keys, patterns and messages for 2000 rows; want a bounded size", n)
	}
	wantStrings(t, "Wide", res.Wide, []string{"shard-structured"})
}

// A rule with patterns but no keys must switch to its wide form past the
// bound too: every pattern costs a SCAN and memory.
func TestTxn_Result_KeyBoundPatternsOnly(t *testing.T) {
	const maxKeys = 10
	rules := mustParseRules(t, "rules.yaml", []byte(`version: 1
rules:
  - name: docs
    table: docs
    patterns: ["t:{tenant_id}:doc:{id}:*"]
    scope: [tenant_id]
`))
	docs := newRelation(t, 9, "public", "docs", column{"id", true}, column{"tenant_id", false})
	txn := router.New(rules, maxKeys, nil).NewTxn(7)
	for i := range 1000 {
		txn.Add(insert(docs, row(t, strconv.Itoa(i), "t1")))
	}
	txn.Commit()
	res := txn.Result()
	for i := range 1000 {
		if k := "t:t1:doc:" + strconv.Itoa(i) + ":x"; !covered(res, k) {
			t.Fatalf("key %q not covered: lost invalidation", k)
		}
	}
	if len(res.Patterns) > maxKeys+1 {
		t.Errorf("%d patterns for 1000 rows with maxKeys %d, want the wide form t:t1:doc:*:* instead", len(res.Patterns), maxKeys)
	}
	wantStrings(t, "Wide", res.Wide, []string{"docs"})
}

func TestTxn_Result_Truncate(t *testing.T) {
	shards := shardsRel(t)
	users := usersRel(t)
	res := run(t, renderRouter(t, 0, nil), 7, &cdc.Change{Op: cdc.OpTruncate, Truncated: []*cdc.Relation{shards, users}})

	if len(res.Keys) != 0 {
		t.Errorf("Keys = %q, want none: a truncate has no row values", res.Keys)
	}
	wantStrings(t, "Patterns", res.Patterns, []string{
		"app:tenant:*:shard:*:structured", "app:tenant:*:vsearch:*",
		"app:tenant:*:user:*:profile", "app:tenant:*:nick:*",
	})
	wantStrings(t, "channels", channels(res), []string{"shard:*:*", "user:*:*"})
	for _, m := range res.Messages() {
		if m.Op != cdc.OpTruncate {
			t.Errorf("message %s: op %s, want truncate", m.Channel, m.Op)
		}
	}
	wantCounts := []router.ChangeCount{{Table: "public.shards", Op: cdc.OpTruncate, N: 1}, {Table: "public.users", Op: cdc.OpTruncate, N: 1}}
	if !slices.Equal(res.Counts, wantCounts) {
		t.Errorf("Counts = %+v, want %+v", res.Counts, wantCounts)
	}
	checkGolden(t, "truncate", res)
}

func TestTxn_DiscardSub(t *testing.T) {
	shards := shardsRel(t)
	const top, aborted, kept = 100, 101, 102
	add := func(xid uint32, id, tenant string) *cdc.Change {
		c := insert(shards, row(t, id, tenant, "title", "p"))
		c.Xid = xid
		return c
	}
	txn := renderRouter(t, 0, nil).NewTxn(top)
	txn.Add(add(top, "1", "t1"))
	txn.Add(add(aborted, "2", "t1"))
	txn.Add(add(aborted, "3", "t9"))
	txn.Add(add(kept, "4", "t1"))
	txn.Add(add(0, "5", "t1")) // not streamed: belongs to the transaction
	txn.DiscardSub(aborted)
	txn.Commit()
	res := txn.Result()

	wantStrings(t, "Keys", res.Keys, []string{
		"app:tenant:t1:shard:1:structured", "app:tenant:t1:shard:5:structured", "app:tenant:t1:shard:4:structured",
	})
	wantStrings(t, "Patterns", res.Patterns, []string{"app:tenant:t1:vsearch:*"})
	wantStrings(t, "channels", channels(res), []string{"shard:t1:1", "shard:t1:5", "shard:t1:4"})
	if res.Changes != 3 {
		t.Errorf("Changes = %d, want 3 (the aborted subtransaction's changes are gone)", res.Changes)
	}
	checkGolden(t, "discard_sub", res)
}

func TestTxn_Result_NoRules(t *testing.T) {
	other := newRelation(t, 5, "public", "audit_log", column{"id", true})
	obs := &recorder{}
	rt := renderRouter(t, 0, obs)
	res := run(t, rt, 7, insert(other, row(t, "1")), insert(other, row(t, "2")))
	if !res.Empty() {
		t.Errorf("result %+v, want empty", res)
	}
	if res.Changes != 2 {
		t.Errorf("Changes = %d, want 2", res.Changes)
	}
	// A new description of the table (after a rename, say) is reported anew.
	renamed := newRelation(t, 5, "public", "audit_log", column{"id", true}, column{"at", false})
	run(t, rt, 8, insert(renamed, row(t, "3", "now")))
	want := []noRule{{"public.audit_log", true}, {"public.audit_log", false}, {"public.audit_log", true}}
	if !slices.Equal(obs.noRules, want) {
		t.Errorf("NoRule calls %+v, want %+v", obs.noRules, want)
	}
	if len(obs.calls) != 0 {
		t.Errorf("RenderSkipped calls %+v, want none", obs.calls)
	}
	// A nil observer is allowed.
	if res := run(t, renderRouter(t, 0, nil), 9, insert(other, row(t, "1"))); !res.Empty() {
		t.Errorf("result %+v, want empty", res)
	}
}

func TestTxn_Result_IsStable(t *testing.T) {
	shards := shardsRel(t)
	txn := renderRouter(t, 0, nil).NewTxn(7)
	txn.Add(insert(shards, row(t, "1", "t1", "a", "p")))
	txn.Commit()
	first := txn.Result()
	if second := txn.Result(); second != first {
		t.Errorf("second Result() = %p, want the same %p", second, first)
	}
}

// A schema change arrives as a new *cdc.Relation with the same id; the
// router must render against the new column positions.
func TestTxn_Add_RelationChanged(t *testing.T) {
	rt := renderRouter(t, 0, nil)
	v1 := shardsRel(t)
	res := run(t, rt, 7, insert(v1, row(t, "1", "t1", "a", "p")))
	wantStrings(t, "Keys v1", res.Keys, []string{"app:tenant:t1:shard:1:structured"})

	v2 := newRelation(t, v1.ID, "public", "shards",
		column{"tenant_id", false}, column{"id", true}, column{"payload", false}, column{"title", false})
	res = run(t, rt, 8, insert(v2, row(t, "t2", "2", "p", "a")))
	wantStrings(t, "Keys v2", res.Keys, []string{"app:tenant:t2:shard:2:structured"})
}

// Past a handful of entries a transaction indexes its keys and channels in
// maps built from its lists: de-duplication must give the same answer on
// both sides of that switch, and a message's first key (which shares the
// key list's storage) must keep its own list when more keys join it.
func TestTxn_Result_DedupAcrossIndexSwitch(t *testing.T) {
	rules := mustParseRules(t, "rules.yaml", []byte(`version: 1
rules:
  - name: items
    table: items
    keys: ["item:{id}", "tenant:{tenant_id}:items"]
    channel: "item:{tenant_id}:{id}"
`))
	items := newRelation(t, 1, "public", "items", column{"id", true}, column{"tenant_id", false})
	for _, rows := range []int{3, 8, 9, 40} {
		t.Run(strconv.Itoa(rows)+"-rows", func(t *testing.T) {
			var changes []*cdc.Change
			var wantKeys []string
			for i := 1; i <= rows; i++ {
				changes = append(changes, insert(items, row(t, strconv.Itoa(i), "t1")))
				wantKeys = append(wantKeys, "item:"+strconv.Itoa(i))
				if i == 1 {
					wantKeys = append(wantKeys, "tenant:t1:items")
				}
			}
			// every row again, in reverse: nothing new, ops become update
			for i := rows; i >= 1; i-- {
				changes = append(changes, updateChange(items, cdc.OldNone, nil, row(t, strconv.Itoa(i), "t1")))
			}
			res := run(t, router.New(rules, 0, nil), 7, changes...)
			wantStrings(t, "Keys", res.Keys, wantKeys)
			if len(res.Messages()) != rows {
				t.Fatalf("%d messages, want %d: %q", len(res.Messages()), rows, channels(res))
			}
			for i := 1; i <= rows; i++ {
				m := findMessage(t, res, "item:t1:"+strconv.Itoa(i))
				if m.Op != cdc.OpUpdate {
					t.Errorf("op of item:t1:%d = %s, want update", i, m.Op)
				}
				wantStrings(t, "keys of item:t1:"+strconv.Itoa(i), m.Keys, []string{"item:" + strconv.Itoa(i), "tenant:t1:items"})
			}
		})
	}
}

// A Result built message by message (replay from the journal) gives the
// messages back as they went in, a subject first seen on a later message
// included.
func TestResult_AddMessage(t *testing.T) {
	in := []router.Message{
		{Channel: "shard:t1:1", Op: cdc.OpUpdate, Table: "public.shards", Rule: "r1", Keys: []string{"k1", "k2"}},
		{Channel: "shard:t1:2", Op: cdc.OpDelete, Table: "public.shards", Rule: "r1", Patterns: []string{"p:*"}},
		{Channel: "user:7", Subject: "cache.invalidate.user.7", Op: cdc.OpInsert, Table: "public.users", Rule: "r2", Keys: []string{"k1"}},
		{Channel: "", Op: cdc.OpTruncate},
	}
	var res router.Result
	for _, m := range in {
		res.AddMessage(m)
	}
	if got := res.Messages(); !reflect.DeepEqual(got, in) {
		t.Fatalf("messages:\n got %+v\nwant %+v", got, in)
	}
	if res.NumMessages() != len(in) || res.Channel(2) != "user:7" || res.Empty() {
		t.Errorf("NumMessages %d, Channel(2) %q, Empty %v", res.NumMessages(), res.Channel(2), res.Empty())
	}
}

// TestTxn_Early: a large transaction hands its keys on in parts while it
// arrives; the parts are exactly the result's first keys, each once, still
// intact after the transaction went on rendering, and the result marks
// them unlinked but still lists them (and its messages their keys).
func TestTxn_Early(t *testing.T) {
	shards := shardsRel(t)
	const rows = 2*router.EarlyKeys + router.EarlyKeys/2
	txn := renderRouter(t, 8*router.EarlyKeys, nil).NewTxn(7) // the bound counts keys and channels
	key := func(i int) string { return "app:tenant:t1:shard:" + strconv.Itoa(i) + ":structured" }
	var early []string
	parts := 0
	add := func(i int) {
		txn.Add(insert(shards, row(t, strconv.Itoa(i), "t1", "title", "p")))
		part, ok := txn.Early()
		if !ok {
			return
		}
		parts++
		res := part.Result()
		if res.NumMessages() != 0 || len(res.Patterns) != 0 || res.Unlinked != 0 {
			t.Fatalf("early part %d: %d messages, patterns %q, unlinked %d: want keys only",
				parts, res.NumMessages(), res.Patterns, res.Unlinked)
		}
		if len(res.Keys) != router.EarlyKeys {
			t.Errorf("early part %d has %d keys, want %d", parts, len(res.Keys), router.EarlyKeys)
		}
		early = append(early, res.Keys...)
	}
	for i := range rows {
		add(i)
		if i == router.EarlyKeys+5 {
			add(3) // a key handed on already: not handed on again
		}
	}
	txn.Commit()
	res := txn.Result()
	if parts != 2 {
		t.Fatalf("%d early parts, want 2", parts)
	}
	if len(res.Keys) != rows {
		t.Fatalf("result has %d keys, want %d", len(res.Keys), rows)
	}
	for i, k := range res.Keys {
		if k != key(i) {
			t.Fatalf("result key %d = %q, want %q", i, k, key(i))
		}
	}
	if res.Unlinked != len(early) || !slices.Equal(early, res.Keys[:res.Unlinked]) {
		t.Errorf("unlinked %d; early keys (%d) are not the result's first keys", res.Unlinked, len(early))
	}
	if got := res.ToUnlink(); len(got) != rows-2*router.EarlyKeys || got[0] != key(2*router.EarlyKeys) {
		t.Errorf("ToUnlink has %d keys from %.40q, want %d from %q", len(got), got, rows-2*router.EarlyKeys, key(2*router.EarlyKeys))
	}
	if res.NumMessages() != rows {
		t.Errorf("%d messages, want one per row (%d)", res.NumMessages(), rows)
	}
	if m := findMessage(t, res, "shard:t1:3"); !slices.Equal(m.Keys, []string{key(3)}) {
		t.Errorf("message of an early key lists %q, want %q", m.Keys, key(3))
	}
	if _, ok := txn.Early(); ok {
		t.Error("Early split a finished transaction")
	}
}

// TestTxn_Early_ReadConcurrently: the applier reads a part's keys while
// the stream goes on adding to the transaction (run with -race: make test
// does for this package).
func TestTxn_Early_ReadConcurrently(t *testing.T) {
	shards := shardsRel(t)
	txn := renderRouter(t, 8*router.EarlyKeys, nil).NewTxn(7)
	key := func(i int) string { return "app:tenant:t1:shard:" + strconv.Itoa(i) + ":structured" }
	type checked struct{ from, bad int }
	results := make(chan checked, 4)
	parts := 0
	for i := range 3*router.EarlyKeys + 10 {
		txn.Add(insert(shards, row(t, strconv.Itoa(i), "t1", "title", "p")))
		part, ok := txn.Early()
		if !ok {
			continue
		}
		from := parts * router.EarlyKeys
		parts++
		go func() {
			bad := 0
			for j, k := range part.Result().Keys {
				if k != key(from+j) {
					bad++
				}
			}
			results <- checked{from, bad}
		}()
	}
	if parts != 3 {
		t.Fatalf("%d early parts, want 3", parts)
	}
	for range parts {
		if c := <-results; c.bad > 0 {
			t.Errorf("part from key %d: %d keys changed while the transaction went on", c.from, c.bad)
		}
	}
}

// TestTxn_Early_Streamed: a transaction with streamed subtransactions may
// still lose one to an abort, so it is never split.
func TestTxn_Early_Streamed(t *testing.T) {
	shards := shardsRel(t)
	txn := renderRouter(t, 8*router.EarlyKeys, nil).NewTxn(100) // the bound counts keys and channels
	for i := range 2 * router.EarlyKeys {
		c := insert(shards, row(t, strconv.Itoa(i), "t1", "title", "p"))
		c.Xid = 100 + uint32(i%2) // every other change in subtransaction 101
		txn.Add(c)
		if _, ok := txn.Early(); ok {
			t.Fatalf("split after change %d of a streamed transaction", i)
		}
	}
	txn.Commit()
	if res := txn.Result(); res.Unlinked != 0 || len(res.ToUnlink()) != 2*router.EarlyKeys {
		t.Errorf("unlinked %d, to unlink %d: want 0 and %d", res.Unlinked, len(res.ToUnlink()), 2*router.EarlyKeys)
	}
}
