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
