package router_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cachewire/invalidator/router"
)

// mustParseRules parses a rules file that the test expects to be valid.
func mustParseRules(tb testing.TB, name string, data []byte) *router.Rules {
	tb.Helper()
	rs, err := router.ParseRules(name, data)
	if err != nil {
		tb.Fatalf("ParseRules(%s): %v", name, err)
	}
	return rs
}

// loadRules loads a rules fixture from testdata.
func loadRules(tb testing.TB, file string) *router.Rules {
	tb.Helper()
	rs, err := router.LoadRules(filepath.Join("testdata", file))
	if err != nil {
		tb.Fatalf("LoadRules(%s): %v", file, err)
	}
	return rs
}

// ruleByName finds a rule or fails the test.
func ruleByName(tb testing.TB, rs *router.Rules, name string) *router.Rule {
	tb.Helper()
	for _, r := range rs.Rules {
		if r.Name == name {
			return r
		}
	}
	tb.Fatalf("no rule %q", name)
	return nil
}

func templateStrings(ts []*router.Template) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.String())
	}
	return out
}

func TestLoadRules_SpecExample(t *testing.T) {
	rs := loadRules(t, "spec_rules.yaml")
	if rs.Version != 1 || rs.KeyPrefix != "" || rs.ChannelPrefix != "cache:invalidate:" {
		t.Errorf("header = version %d, key_prefix %q, channel_prefix %q; want 1, \"\", \"cache:invalidate:\"",
			rs.Version, rs.KeyPrefix, rs.ChannelPrefix)
	}
	type want struct {
		name, table    string
		line           int
		on, changed    []string
		keys, patterns []string
		channel        string // "" = no channel
		scope          []string
	}
	all := []string{"insert", "update", "delete"}
	wants := []want{
		{
			name: "shard-structured", table: "public.shards", line: 5,
			on: all, changed: []string{"payload", "title"},
			keys:     []string{"tenant:{tenant_id}:shard:{id}:structured"},
			patterns: []string{"tenant:{tenant_id}:vsearch:*"},
			channel:  "shard:{tenant_id}:{id}", scope: []string{"tenant_id"},
		},
		{
			name: "user-profile", table: "public.users", line: 15, on: all,
			keys: []string{"tenant:{tenant_id}:user:{id}:profile"}, channel: "user:{tenant_id}:{id}",
		},
		{
			name: "acl", table: "public.acl", line: 19, on: all,
			keys: []string{"tenant:{tenant_id}:acl:{user_id}:{shard_id}"}, channel: "acl:{tenant_id}:{user_id}",
		},
		{
			name: "session", table: "public.sessions", line: 23, on: []string{"update", "delete"},
			keys: []string{"session:{token_hash}"},
		},
	}
	if len(rs.Rules) != len(wants) {
		t.Fatalf("got %d rules, want %d", len(rs.Rules), len(wants))
	}
	for i, w := range wants {
		t.Run(w.name, func(t *testing.T) {
			r := rs.Rules[i]
			if r.Name != w.name || r.Table != w.table {
				t.Errorf("rule = %q on %q, want %q on %q", r.Name, r.Table, w.name, w.table)
			}
			if r.Line != w.line || r.File != filepath.Join("testdata", "spec_rules.yaml") {
				t.Errorf("located at %s:%d, want testdata/spec_rules.yaml:%d", r.File, r.Line, w.line)
			}
			if !slices.Equal(r.On, w.on) {
				t.Errorf("On = %q, want %q", r.On, w.on)
			}
			if !slices.Equal(r.Changed, w.changed) {
				t.Errorf("Changed = %q, want %q", r.Changed, w.changed)
			}
			if got := templateStrings(r.Keys); !slices.Equal(got, w.keys) {
				t.Errorf("Keys = %q, want %q", got, w.keys)
			}
			if got := templateStrings(r.Patterns); !slices.Equal(got, w.patterns) {
				t.Errorf("Patterns = %q, want %q", got, w.patterns)
			}
			switch {
			case w.channel == "" && r.Channel != nil:
				t.Errorf("Channel = %q, want none", r.Channel)
			case w.channel != "" && (r.Channel == nil || r.Channel.String() != w.channel):
				t.Errorf("Channel = %v, want %q", r.Channel, w.channel)
			}
			if !slices.Equal(r.Scope, w.scope) {
				t.Errorf("Scope = %q, want %q", r.Scope, w.scope)
			}
		})
	}
}

func TestParseRules_Defaults(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, rs *router.Rules)
	}{
		{
			name: "channel_prefix defaults",
			yaml: "version: 1\nrules:\n  - name: r\n    table: shards\n    keys: [\"k:{id}\"]\n",
			check: func(t *testing.T, rs *router.Rules) {
				if router.DefaultChannelPrefix != "cache:invalidate:" || rs.ChannelPrefix != router.DefaultChannelPrefix {
					t.Errorf("ChannelPrefix = %q, want %q", rs.ChannelPrefix, "cache:invalidate:")
				}
				if rs.KeyPrefix != "" {
					t.Errorf("KeyPrefix = %q, want empty", rs.KeyPrefix)
				}
			},
		},
		{
			name: "empty channel_prefix is kept",
			yaml: "version: 1\nchannel_prefix: \"\"\nrules:\n  - name: r\n    table: shards\n    keys: [\"k:{id}\"]\n",
			check: func(t *testing.T, rs *router.Rules) {
				if rs.ChannelPrefix != "" {
					t.Errorf("ChannelPrefix = %q, want empty", rs.ChannelPrefix)
				}
			},
		},
		{
			name: "bare table is public and on defaults to insert update delete",
			yaml: "version: 1\nrules:\n  - name: r\n    table: shards\n    keys: [\"k:{id}\"]\n",
			check: func(t *testing.T, rs *router.Rules) {
				r := rs.Rules[0]
				if r.Table != "public.shards" {
					t.Errorf("Table = %q, want public.shards", r.Table)
				}
				if want := []string{"insert", "update", "delete"}; !slices.Equal(r.On, want) {
					t.Errorf("On = %q, want %q", r.On, want)
				}
			},
		},
		{
			name: "qualified table kept",
			yaml: "version: 1\nrules:\n  - name: r\n    table: billing.invoices\n    keys: [\"k:{id}\"]\n",
			check: func(t *testing.T, rs *router.Rules) {
				if r := rs.Rules[0]; r.Table != "billing.invoices" {
					t.Errorf("Table = %q, want billing.invoices", r.Table)
				}
			},
		},
		{
			name: "scalar on and keys",
			yaml: "version: 1\nrules:\n  - name: r\n    table: t\n    on: truncate\n    keys: \"k:{id}\"\n",
			check: func(t *testing.T, rs *router.Rules) {
				r := rs.Rules[0]
				if !slices.Equal(r.On, []string{"truncate"}) {
					t.Errorf("On = %q, want [truncate]", r.On)
				}
				if got := templateStrings(r.Keys); !slices.Equal(got, []string{"k:{id}"}) {
					t.Errorf("Keys = %q", got)
				}
			},
		},
		{
			name: "channel only rule",
			yaml: "version: 1\nkey_prefix: \"app:\"\nrules:\n  - name: r\n    table: t\n    channel: \"c:{id}\"\n",
			check: func(t *testing.T, rs *router.Rules) {
				r := rs.Rules[0]
				if r.Channel == nil || r.Channel.String() != "c:{id}" || len(r.Keys) != 0 {
					t.Errorf("Channel = %v, Keys = %v; want c:{id} and no keys", r.Channel, r.Keys)
				}
				if rs.KeyPrefix != "app:" {
					t.Errorf("KeyPrefix = %q, want app:", rs.KeyPrefix)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, mustParseRules(t, "rules.yaml", []byte(tt.yaml)))
		})
	}
}

func TestParseRules_Errors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
		want []string // substrings of the message
	}{
		{
			name: "unknown top-level field",
			yaml: "version: 1\nrulez: []\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n",
			line: 2, want: []string{`unknown field "rulez"`},
		},
		{
			name: "namespace column outside the scope",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"t:{tenant_id}:k:{id}\"]\n    scope: [tenant_id]\n    namespace: \"t:{id}:v\"\n",
			line: 7, want: []string{`rule "r1"`, "namespace", `column "id" is not a scope column`, "tenant_id"},
		},
		{
			name: "namespace with columns and no scope",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"t:{tenant_id}:k:{id}\"]\n    namespace: \"t:{tenant_id}:v\"\n",
			line: 6, want: []string{`rule "r1"`, "namespace", `column "tenant_id"`, "no scope"},
		},
		{
			name: "namespace template unbalanced",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"t:{tenant_id}:k\"]\n    scope: [tenant_id]\n    namespace: \"t:{tenant_id:v\"\n",
			line: 7, want: []string{`rule "r1"`, "namespace", "without"},
		},
		{
			name: "namespace empty",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n    namespace: \"\"\n",
			line: 6, want: []string{`rule "r1"`, "namespace", "non-empty"},
		},
		{
			name: "namespace a list",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n    namespace: [a, b]\n",
			line: 6, want: []string{`rule "r1"`, "namespace", "string"},
		},
		{
			name: "unknown rule field",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    kes: [\"k:{id}\"]\n",
			line: 5, want: []string{`unknown field "kes"`},
		},
		{
			name: "missing version",
			yaml: "rules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n",
			line: 1, want: []string{"version", "missing"},
		},
		{
			name: "version 2",
			yaml: "# comment\nversion: 2\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n",
			line: 2, want: []string{"version", "2"},
		},
		{
			name: "version not a number",
			yaml: "version: one\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n",
			line: 1, want: []string{"version"},
		},
		{
			name: "no rules",
			yaml: "version: 1\nrules: []\n",
			line: 2, want: []string{"rules"},
		},
		{
			name: "duplicate rule name",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n  - name: r1\n    table: u\n    keys: [\"u:{id}\"]\n",
			line: 6, want: []string{`rule "r1"`, "line 3"},
		},
		{
			name: "missing name",
			yaml: "version: 1\nrules:\n  - table: t\n    keys: [\"k:{id}\"]\n",
			line: 3, want: []string{"name"},
		},
		{
			name: "missing table",
			yaml: "version: 1\nrules:\n  - name: r1\n    keys: [\"k:{id}\"]\n",
			line: 3, want: []string{`rule "r1"`, "missing table"},
		},
		{
			name: "three part table",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: db.public.t\n    keys: [\"k:{id}\"]\n",
			line: 4, want: []string{`rule "r1"`, "db.public.t"},
		},
		{
			name: "bad on value",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    on: [insert, upsert]\n    keys: [\"k:{id}\"]\n",
			line: 5, want: []string{`rule "r1"`, `"upsert"`},
		},
		{
			name: "empty on",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    on: []\n    keys: [\"k:{id}\"]\n",
			line: 5, want: []string{`rule "r1"`, "on"},
		},
		{
			name: "unbalanced brace in second key",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys:\n      - \"k:{id}\"\n      - \"k:{tenant_id:x\"\n",
			line: 7, want: []string{`rule "r1"`, "keys[1]", "'{' without '}'"},
		},
		{
			name: "closing brace without opening",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    patterns: [\"k:id}:*\"]\n",
			line: 5, want: []string{`rule "r1"`, "patterns[0]", "'}' without '{'"},
		},
		{
			name: "empty placeholder in channel",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n    channel: \"c:{}\"\n",
			line: 6, want: []string{`rule "r1"`, "channel", "empty placeholder"},
		},
		{
			name: "scope column not used by any template",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n    scope: [tenant_id]\n",
			line: 6, want: []string{`rule "r1"`, "scope", `"tenant_id"`},
		},
		{
			name: "rule with no keys patterns or channel",
			yaml: "version: 1\nrules:\n  - name: ok\n    table: t\n    keys: [\"k:{id}\"]\n  - name: r1\n    table: t\n    changed: [payload]\n",
			line: 6, want: []string{`rule "r1"`, "keys, patterns or channel"},
		},
		{
			name: "invalid YAML: character that cannot start a token",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: @bad\n",
			line: 4, want: []string{"invalid YAML"},
		},
		{
			name: "invalid YAML: unterminated quoted string",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{id}\"]\n  - name: r2\n    table: \"t\n",
			line: 7, want: []string{"invalid YAML"},
		},
		{
			name: "invalid YAML: mapping value in plain scalar",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: \"k:{id}\"\n    channel: a: b\n",
			line: 6, want: []string{"invalid YAML", "mapping values"},
		},
		{
			name: "not a mapping",
			yaml: "- version: 1\n",
			line: 1, want: []string{"mapping"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := router.ParseRules("rules.yaml", []byte(tt.yaml))
			re := asRulesError(t, err)
			prefix := "rules.yaml:" + strconv.Itoa(tt.line) + ":"
			if re.File != "rules.yaml" || re.Line != tt.line || !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q (line %d), want it to start with %q", err, re.Line, prefix)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// Duplicate mapping keys are invalid YAML; a rules file that repeats a
// field must not silently lose the first value (and with it invalidations).
func TestParseRules_DuplicateFields(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		line int
	}{
		{
			name: "rule field twice",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"a:{id}\"]\n    keys: [\"b:{id}\"]\n",
			line: 6,
		},
		{
			name: "rules twice",
			yaml: "version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"a:{id}\"]\nrules:\n  - name: r2\n    table: t\n    keys: [\"b:{id}\"]\n",
			line: 6,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := router.ParseRules("rules.yaml", []byte(tt.yaml))
			re := asRulesError(t, err)
			if re.Line != tt.line {
				t.Errorf("error %q at line %d, want line %d", err, re.Line, tt.line)
			}
		})
	}
}

// An unknown field inside a rule should name the rule, like every other
// rule error does, when the rule has a name.
func TestParseRules_UnknownRuleFieldNamesRule(t *testing.T) {
	yaml := "version: 1\nrules:\n  - name: r1\n    table: t\n    kes: [\"k:{id}\"]\n"
	_, err := router.ParseRules("rules.yaml", []byte(yaml))
	asRulesError(t, err)
	if !strings.Contains(err.Error(), `rule "r1"`) {
		t.Errorf("error %q does not name rule r1", err)
	}
}

func asRulesError(tb testing.TB, err error) *router.Error {
	tb.Helper()
	if err == nil {
		tb.Fatal("ParseRules succeeded, want an error")
	}
	var re *router.Error
	if !errors.As(err, &re) {
		tb.Fatalf("error %v is %T, want *router.Error", err, err)
	}
	return re
}

func TestLoadRules_MissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.yaml")
	_, err := router.LoadRules(path)
	re := asRulesError(t, err)
	if re.File != path || !strings.HasPrefix(err.Error(), path+": ") {
		t.Errorf("error %q, want it to start with %q", err, path+": ")
	}
}

func TestLoadRules_ReportsPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("version: 1\nrules:\n  - name: r1\n    table: t\n    keys: [\"k:{}\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := router.LoadRules(path)
	asRulesError(t, err)
	if want := path + ":5:"; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want prefix %q", err, want)
	}
}

func TestRules_CheckColumns(t *testing.T) {
	rs := loadRules(t, "spec_rules.yaml")
	shards := []string{"id", "tenant_id", "title", "payload"}
	tests := []struct {
		name    string
		table   string
		cols    []string
		wantErr []string // substrings; nil = no error
	}{
		{name: "all present", table: "public.shards", cols: shards},
		{name: "extra columns are fine", table: "public.shards", cols: append(slices.Clone(shards), "created_at")},
		{name: "table without rules", table: "public.other", cols: nil},
		{name: "key column missing", table: "public.shards", cols: []string{"id", "title", "payload"},
			wantErr: []string{`rule "shard-structured"`, `"tenant_id"`, "public.shards"}},
		{name: "changed column missing", table: "public.shards", cols: []string{"id", "tenant_id", "payload"},
			wantErr: []string{`rule "shard-structured"`, `"title"`}},
		{name: "second rule's table", table: "public.acl", cols: []string{"tenant_id", "user_id"},
			wantErr: []string{`rule "acl"`, `"shard_id"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := rs.CheckColumns(tt.table, tt.cols)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckColumns: %v", err)
				}
				return
			}
			re := asRulesError(t, err)
			if re.Line == 0 || !strings.HasPrefix(err.Error(), re.File+":"+strconv.Itoa(re.Line)+":") {
				t.Errorf("error %q is not located at the rule", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %s", err, w)
				}
			}
		})
	}
}

func TestRules_Tables(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{
			name: "spec example",
			yaml: mustReadFile(t, filepath.Join("testdata", "spec_rules.yaml")),
			want: []string{"public.shards", "public.users", "public.acl", "public.sessions"},
		},
		{
			name: "dedup across spellings keeps first appearance",
			yaml: "version: 1\nrules:\n" +
				"  - {name: a, table: users, keys: [\"a:{id}\"]}\n" +
				"  - {name: b, table: app.shards, keys: [\"b:{id}\"]}\n" +
				"  - {name: c, table: public.users, keys: [\"c:{id}\"]}\n" +
				"  - {name: d, table: app.shards, keys: [\"d:{id}\"]}\n" +
				"  - {name: e, table: shards, keys: [\"e:{id}\"]}\n",
			want: []string{"public.users", "app.shards", "public.shards"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := mustParseRules(t, "rules.yaml", []byte(tt.yaml))
			if got := rs.Tables(); !slices.Equal(got, tt.want) {
				t.Errorf("Tables() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRule_Columns(t *testing.T) {
	rs := loadRules(t, "spec_rules.yaml")
	tests := []struct {
		rule string
		want []string
	}{
		{"shard-structured", []string{"tenant_id", "id", "payload", "title"}},
		{"acl", []string{"tenant_id", "user_id", "shard_id"}},
		{"session", []string{"token_hash"}},
	}
	for _, tt := range tests {
		t.Run(tt.rule, func(t *testing.T) {
			got := ruleByName(t, rs, tt.rule).Columns()
			if !slices.Equal(got, tt.want) {
				t.Errorf("Columns() = %q, want %q", got, tt.want)
			}
		})
	}
}

func mustReadFile(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
