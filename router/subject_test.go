package router_test

import (
	"testing"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/router"
)

func TestRouter_RenderSubjects(t *testing.T) {
	tests := []struct {
		prefix, tenant string
		want           string
	}{
		{"cache:invalidate:", "t1", "cache.invalidate.user.t1.7"},
		{"cache:invalidate:", "a.b c", "cache.invalidate.user.a%2Eb%20c.7"},
		{"cache:invalidate:", "x>*%", "cache.invalidate.user.x%3E%2A%25.7"},
		{"cache:invalidate:", "a:b", "cache.invalidate.user.a:b.7"}, // one token: ':' is legal inside a token
		{"cache:invalidate:", "", "cache.invalidate.user.%.7"},
		{"", "t1", "user.t1.7"},
		{"app", "t1", "app.user.t1.7"},
	}
	for _, tt := range tests {
		rules, err := router.ParseRules("r.yaml", []byte("version: 1\nchannel_prefix: \""+tt.prefix+"\"\nrules:\n  - name: u\n    table: users\n    channel: \"user:{tenant_id}:{id}\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		rt := router.New(rules, 0, nil)
		rt.RenderSubjects()
		rel := cdc.NewRelation("public.users", []cdc.Column{{Name: "tenant_id"}, {Name: "id"}})
		txn := rt.NewTxn(1)
		txn.Add(&cdc.Change{Op: cdc.OpInsert, Rel: rel, New: cdc.Tuple{{Kind: cdc.DatumText, Data: []byte(tt.tenant)}, {Kind: cdc.DatumText, Data: []byte("7")}}})
		txn.Commit()
		msgs := txn.Result().Messages()
		if len(msgs) != 1 || msgs[0].Subject != tt.want {
			t.Errorf("prefix %q tenant %q: messages %+v, want subject %q", tt.prefix, tt.tenant, msgs, tt.want)
		}
	}
}

// Each form of a message renders its subject as it rendered its channel:
// a wide flush keeps the scope value and stars the rest, a flush of every
// value stars all, and a row with an unknown value stars just that one.
func TestRouter_RenderSubjects_Forms(t *testing.T) {
	rules, err := router.ParseRules("r.yaml", []byte("version: 1\nrules:\n  - name: u\n    table: users\n    keys: [\"user:{tenant_id}:{id}\"]\n    channel: \"user:{tenant_id}:{id}\"\n    scope: [tenant_id]\n"))
	if err != nil {
		t.Fatal(err)
	}
	rt := router.New(rules, 0, nil)
	rt.RenderSubjects()
	subject := func(res *router.Result) string {
		t.Helper()
		if res.NumMessages() != 1 {
			t.Fatalf("%d messages, want 1", res.NumMessages())
		}
		return res.Message(0).Subject
	}
	if got, want := subject(rt.Wide(map[string]string{"tenant_id": "t1"}, cdc.OpTruncate)), "cache.invalidate.user.t1.%2A"; got != want {
		t.Errorf("wide for t1: subject %q, want %q", got, want)
	}
	if got, want := subject(rt.Wide(nil, cdc.OpTruncate)), "cache.invalidate.user.%2A.%2A"; got != want {
		t.Errorf("wide for every value: subject %q, want %q", got, want)
	}
	rel := cdc.NewRelation("public.users", []cdc.Column{{Name: "tenant_id"}, {Name: "id"}})
	txn := rt.NewTxn(1)
	txn.Add(&cdc.Change{Op: cdc.OpUpdate, Rel: rel, New: cdc.Tuple{{Kind: cdc.DatumText, Data: []byte("t1")}, {Kind: cdc.DatumUnchanged}}})
	txn.Commit()
	if got, want := subject(txn.Result()), "cache.invalidate.user.t1.%2A"; got != want {
		t.Errorf("unknown id: subject %q, want %q", got, want)
	}
}
