package router_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/glob"
	"github.com/cachewire/invalidator/router"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		src     string
		columns []string
		wantErr string // substring; "" = valid
	}{
		{src: "tenant:{tenant_id}:shard:{id}:structured", columns: []string{"tenant_id", "id"}},
		{src: "{id}", columns: []string{"id"}},
		{src: "{a}{b}", columns: []string{"a", "b"}},
		{src: "static", columns: nil},
		{src: "tenant:{ tenant_id }:x", columns: []string{"tenant_id"}},
		{src: "tenant:{tenant_id}:vsearch:*", columns: []string{"tenant_id"}},
		{src: "k:{id}:{id}", columns: []string{"id", "id"}},
		{src: "", wantErr: "empty template"},
		{src: "k:{id", wantErr: "'{' without '}'"},
		{src: "k:{a{b}", wantErr: "'{' without '}'"},
		{src: "k:id}", wantErr: "'}' without '{'"},
		{src: "k:{}", wantErr: "empty placeholder"},
		{src: "k:{  }", wantErr: "empty placeholder"},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			tpl, err := router.ParseTemplate(tt.src)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTemplate(%q) error = %v, want %q", tt.src, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTemplate(%q): %v", tt.src, err)
			}
			if tpl.String() != tt.src {
				t.Errorf("String() = %q, want %q", tpl.String(), tt.src)
			}
			if got := tpl.Columns(); !slices.Equal(got, tt.columns) {
				t.Errorf("Columns() = %q, want %q", got, tt.columns)
			}
		})
	}
}

func TestAppendGlobEscaped(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"t1", "t1"},
		{"*", `\*`},
		{"t[12]", `t\[12\]`},
		{"a?b", `a\?b`},
		{`back\slash`, `back\\slash`},
		{"x:y", "x:y"},
		{"ünï{}^-!", "ünï{}^-!"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := string(glob.AppendEscaped([]byte("p:"), tt.in))
			if got != "p:"+tt.want {
				t.Errorf("AppendGlobEscaped(%q) = %q, want %q", tt.in, got, "p:"+tt.want)
			}
			// The escaped value matches itself literally and nothing else.
			if !redisMatch(got, "p:"+tt.in) {
				t.Errorf("pattern %q does not match %q", got, "p:"+tt.in)
			}
			if redisMatch(got, "p:"+tt.in+"x") {
				t.Errorf("pattern %q matches a longer value", got)
			}
		})
	}
}

// redisMatch reports whether s matches the Redis glob pattern (as KEYS,
// SCAN MATCH and PSUBSCRIBE do: * ? [...] [^...] [a-z] and \ escapes).
func redisMatch(pattern, s string) bool {
	for len(pattern) > 0 {
		switch pattern[0] {
		case '*':
			for len(pattern) > 1 && pattern[1] == '*' {
				pattern = pattern[1:]
			}
			if len(pattern) == 1 {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if redisMatch(pattern[1:], s[i:]) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			s, pattern = s[1:], pattern[1:]
		case '[':
			if s == "" {
				return false
			}
			pattern = pattern[1:]
			not := len(pattern) > 0 && pattern[0] == '^'
			if not {
				pattern = pattern[1:]
			}
			match := false
			for len(pattern) > 0 && pattern[0] != ']' {
				switch {
				case pattern[0] == '\\' && len(pattern) >= 2:
					match = match || pattern[1] == s[0]
					pattern = pattern[2:]
				case len(pattern) >= 3 && pattern[1] == '-':
					lo, hi := min(pattern[0], pattern[2]), max(pattern[0], pattern[2])
					match = match || (s[0] >= lo && s[0] <= hi)
					pattern = pattern[3:]
				default:
					match = match || pattern[0] == s[0]
					pattern = pattern[1:]
				}
			}
			if len(pattern) > 0 {
				pattern = pattern[1:] // the ']'
			}
			if match == not {
				return false
			}
			s = s[1:]
		case '\\':
			if len(pattern) >= 2 {
				pattern = pattern[1:]
			}
			fallthrough
		default:
			if s == "" || s[0] != pattern[0] {
				return false
			}
			s, pattern = s[1:], pattern[1:]
		}
	}
	return s == ""
}

// The test's glob matcher is the oracle of the coverage checks: pin it.
func TestRedisMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"a*", "abc", true},
		{"a*c", "abc", true},
		{"a*c", "abd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a[bc]d", "acd", true},
		{"a[^bc]d", "acd", false},
		{"a[^bc]d", "aed", true},
		{"a[b-d]e", "ace", true},
		{"a[b-d]e", "aee", false},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{`t\[12\]`, "t[12]", true},
		{`t\[12\]`, "t1", false},
		{`back\\slash`, `back\slash`, true},
		{`tenant:\*:vsearch:*`, "tenant:*:vsearch:1", true},
		{`tenant:\*:vsearch:*`, "tenant:t1:vsearch:1", false},
		{"tenant:t1:shard:*:structured", "tenant:t1:shard:42:structured", true},
		{"tenant:t1:shard:*:structured", "tenant:t10:shard:42:structured", false},
	}
	for _, tt := range tests {
		if got := redisMatch(tt.pattern, tt.s); got != tt.want {
			t.Errorf("redisMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestTxn_Result_GlobEscaping(t *testing.T) {
	shards := shardsRel(t)
	tests := []struct {
		tenant  string
		escaped string
		others  []string // tenants whose keys the pattern must not reach
	}{
		{tenant: "*", escaped: `\*`, others: []string{"t1", "", "**"}},
		{tenant: "t[12]", escaped: `t\[12\]`, others: []string{"t1", "t2"}},
		{tenant: "a?b", escaped: `a\?b`, others: []string{"axb", "a?bc"}},
		{tenant: `back\slash`, escaped: `back\\slash`, others: []string{"backslash", `back\\slash`}},
		{tenant: "x:y", escaped: "x:y", others: []string{"x", "x:y:z"}},
		{tenant: "t*", escaped: `t\*`, others: []string{"t1", "tenant"}},
	}
	var all []*cdc.Change
	for _, tt := range tests {
		all = append(all, insert(shards, row(t, "1", tt.tenant, "title", "p")))
		t.Run(tt.tenant, func(t *testing.T) {
			res := run(t, renderRouter(t, 0, nil), 7, insert(shards, row(t, "1", tt.tenant, "title", "p")))
			// exact keys and channels carry the value verbatim
			wantStrings(t, "Keys", res.Keys, []string{"app:tenant:" + tt.tenant + ":shard:1:structured"})
			wantStrings(t, "channels", channels(res), []string{"shard:" + tt.tenant + ":1"})
			// patterns escape it
			pat := "app:tenant:" + tt.escaped + ":vsearch:*"
			wantStrings(t, "Patterns", res.Patterns, []string{pat})
			if !redisMatch(pat, "app:tenant:"+tt.tenant+":vsearch:q") {
				t.Errorf("pattern %q does not match the tenant's own key", pat)
			}
			for _, o := range tt.others {
				if k := "app:tenant:" + o + ":vsearch:q"; redisMatch(pat, k) {
					t.Errorf("pattern %q of tenant %q reaches %q", pat, tt.tenant, k)
				}
			}
		})
	}
	checkGolden(t, "glob_escaping", run(t, renderRouter(t, 0, nil), 7, all...))
}

// In the wide form the scope value is escaped too: a tenant named "*" must
// not flush other tenants.
func TestTxn_Result_GlobEscapingWide(t *testing.T) {
	shards := shardsRel(t)
	// maxKeys 1: the first row uses the budget, the rest go wide.
	res := run(t, renderRouter(t, 1, nil), 7,
		insert(shards, row(t, "1", "t0", "a", "p")),
		insert(shards, row(t, "2", "*", "a", "p")),
		insert(shards, row(t, "3", "t?", "a", "p")),
	)
	wantStrings(t, "Wide", res.Wide, []string{"shard-structured"})
	for _, p := range []string{`app:tenant:\*:shard:*:structured`, `app:tenant:t\?:shard:*:structured`} {
		if !slices.Contains(res.Patterns, p) {
			t.Errorf("Patterns %q lack %q", res.Patterns, p)
		}
	}
	for _, k := range []string{"app:tenant:*:shard:2:structured", "app:tenant:t?:shard:3:structured"} {
		if !covered(res, k) {
			t.Errorf("key %q not covered by %q", k, res.Patterns)
		}
	}
	for _, k := range []string{"app:tenant:t1:shard:9:structured", "app:tenant:tx:shard:3:structured", "app:tenant:t1:vsearch:1"} {
		if covered(res, k) {
			t.Errorf("key %q of another tenant is deleted by %q %q", k, res.Keys, res.Patterns)
		}
	}
}

// The key prefix and literal text of key templates are glob-escaped where
// they become patterns; pattern templates keep their literal glob syntax.
func TestTxn_Result_PrefixEscaping(t *testing.T) {
	rules := mustParseRules(t, "rules.yaml", []byte(`version: 1
key_prefix: "c[1]:"
rules:
  - name: obj
    table: objs
    keys: ["t:{tenant_id}:obj?{id}"]
    patterns: ["t:{tenant_id}:list:[ab]*"]
    scope: [tenant_id]
`))
	objs := newRelation(t, 3, "public", "objs", column{"id", true}, column{"tenant_id", false})
	res := run(t, router.New(rules, 2, nil), 7,
		insert(objs, row(t, "1", "t1")),
		insert(objs, row(t, "2", "t1")),
	)
	wantStrings(t, "Keys", res.Keys, []string{"c[1]:t:t1:obj?1"})
	wantStrings(t, "Patterns", res.Patterns, []string{`c\[1\]:t:t1:list:[ab]*`, `c\[1\]:t:t1:obj\?*`})
	if !covered(res, "c[1]:t:t1:obj?2") || covered(res, "c1:t:t1:obj?2") || covered(res, "c[1]:t:t1:objx2") {
		t.Errorf("patterns %q do not cover exactly the rule's keys", res.Patterns)
	}
}

func TestTxn_Result_NullValue(t *testing.T) {
	users := usersRel(t)
	obs := &recorder{}
	res := run(t, renderRouter(t, 0, obs), 7,
		insert(users, row(t, "1", "t1", nil, "e")),
		insert(users, row(t, "2", "t1", nil, "e")),
		insert(users, row(t, "3", "t1", "bo", "e")),
	)
	wantStrings(t, "Keys", res.Keys, []string{
		"app:tenant:t1:user:1:profile", "app:tenant:t1:user:2:profile",
		"app:tenant:t1:user:3:profile", "app:tenant:t1:nick:bo",
	})
	wantStrings(t, "channels", channels(res), []string{"user:t1:1", "user:t1:2", "user:t1:3"})
	wantStrings(t, "keys of user:t1:1", findMessage(t, res, "user:t1:1").Keys, []string{"app:tenant:t1:user:1:profile"})
	want := []skip{
		{"user-profile", "public.users", "nick", true},
		{"user-profile", "public.users", "nick", false},
	}
	if !slices.Equal(obs.calls, want) {
		t.Errorf("RenderSkipped calls %+v, want %+v", obs.calls, want)
	}
}

func TestTxn_Result_NullValueNilObserver(t *testing.T) {
	users := usersRel(t)
	res := run(t, renderRouter(t, 0, nil), 7, insert(users, row(t, "1", nil, nil, nil)))
	if !res.Empty() {
		t.Errorf("result %+v, want empty: every template needs tenant_id", res)
	}
}

// A column the relation lacks (the schema changed under the rules) skips
// the templates that use it and names the column.
func TestTxn_Result_MissingColumn(t *testing.T) {
	users := newRelation(t, 16390, "public", "users", column{"id", true}, column{"tenant_id", false})
	obs := &recorder{}
	res := run(t, renderRouter(t, 0, obs), 7,
		insert(users, row(t, "1", "t1")),
		insert(users, row(t, "2", "t1")),
	)
	wantStrings(t, "Keys", res.Keys, []string{"app:tenant:t1:user:1:profile", "app:tenant:t1:user:2:profile"})
	want := []skip{
		{"user-profile", "public.users", "nick", true},
		{"user-profile", "public.users", "nick", false},
	}
	if !slices.Equal(obs.calls, want) {
		t.Errorf("RenderSkipped calls %+v, want %+v", obs.calls, want)
	}
}

// An unchanged TOASTed value was not sent, but the key it feeds exists: the
// row is covered by the rule's wide form (bounded by scope), never skipped.
func TestTxn_Result_UnchangedToastGoesWide(t *testing.T) {
	rules := mustParseRules(t, "rules.yaml", []byte(`version: 1
rules:
  - name: doc-title
    table: docs
    keys: ["tenant:{tenant_id}:doc:{id}", "tenant:{tenant_id}:title:{title}"]
    channel: "doc:{tenant_id}:{id}"
    scope: [tenant_id]
`))
	docs := newRelation(t, 4, "public", "docs", column{"id", true}, column{"tenant_id", false}, column{"title", false})
	obs := &recorder{}
	res := run(t, router.New(rules, 0, obs), 7,
		updateChange(docs, cdc.OldNone, nil, row(t, "1", "t1", toast{})))

	for _, k := range []string{"tenant:t1:doc:1", "tenant:t1:title:old title", "tenant:t1:title:x"} {
		if !covered(res, k) {
			t.Errorf("key %q not covered by %q %q", k, res.Keys, res.Patterns)
		}
	}
	for _, k := range []string{"tenant:t2:title:x", "tenant:t2:doc:1"} {
		if covered(res, k) {
			t.Errorf("key %q of another tenant is deleted by %q", k, res.Patterns)
		}
	}
	if len(obs.calls) == 0 || obs.calls[0] != (skip{"doc-title", "public.docs", "title", true}) {
		t.Errorf("RenderSkipped calls %+v, want the title column reported", obs.calls)
	}
}

// Router.Wide renders what replay --tenant flushes: values are glob-escaped,
// so a tenant named "t*" flushes only itself.
func TestRouter_Wide(t *testing.T) {
	tests := []struct {
		name     string
		values   map[string]string
		patterns []string
		channels []string
		covers   []string
		spares   []string
	}{
		{
			name:   "tenant with glob characters",
			values: map[string]string{"tenant_id": "t*"},
			patterns: []string{
				`app:tenant:t\*:shard:*:structured`, `app:tenant:t\*:vsearch:*`,
				`app:tenant:t\*:shard:*:payload`,
				`app:tenant:t\*:user:*:profile`, `app:tenant:t\*:nick:*`,
			},
			channels: []string{"shard:t*:*", "user:t*:*"},
			covers:   []string{"app:tenant:t*:shard:9:structured", "app:tenant:t*:nick:bob"},
			spares:   []string{"app:tenant:t1:shard:9:structured", "app:tenant:t1:nick:bob"},
		},
		{
			// templates without the column are left out: they would flush
			// every value of it, whoever it belongs to
			name:   "column only some templates use",
			values: map[string]string{"nick": "bob"},
			patterns: []string{
				`app:tenant:*:nick:bob`,
			},
			channels: nil,
			covers:   []string{"app:tenant:t1:nick:bob"},
			spares:   []string{"app:tenant:t1:nick:bobby", "app:tenant:t1:shard:1:structured"},
		},
		{
			name:   "no values flushes every rule",
			values: nil,
			patterns: []string{
				"app:tenant:*:shard:*:structured", "app:tenant:*:vsearch:*",
				"app:tenant:*:shard:*:payload",
				"app:tenant:*:user:*:profile", "app:tenant:*:nick:*",
			},
			channels: []string{"shard:*:*", "user:*:*"},
			covers:   []string{"app:tenant:t1:shard:1:structured"},
			spares:   []string{"other:key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := renderRouter(t, 0, nil).Wide(tt.values, cdc.OpDelete)
			if len(res.Keys) != 0 {
				t.Errorf("Keys = %q, want none", res.Keys)
			}
			wantStrings(t, "Patterns", res.Patterns, tt.patterns)
			wantStrings(t, "channels", channels(res), tt.channels)
			for _, m := range res.Messages() {
				if m.Op != cdc.OpDelete {
					t.Errorf("message %s op %s, want delete", m.Channel, m.Op)
				}
			}
			for _, k := range tt.covers {
				if !covered(res, k) {
					t.Errorf("key %q not covered by %q", k, res.Patterns)
				}
			}
			for _, k := range tt.spares {
				if covered(res, k) {
					t.Errorf("key %q deleted by %q", k, res.Patterns)
				}
			}
		})
	}
}
