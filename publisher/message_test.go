package publisher_test

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/publisher"
	"github.com/cachewire/invalidator/router"
)

var (
	commitTime = time.Date(2026, 11, 22, 10, 0, 0, 123456000, time.UTC)
	timeRE     = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)
)

// decode unmarshals a message into a generic map, numbers kept exact.
func decode(tb testing.TB, msg []byte) map[string]any {
	tb.Helper()
	if !json.Valid(msg) {
		tb.Fatalf("invalid JSON: %s", msg)
	}
	dec := json.NewDecoder(bytes.NewReader(msg))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		tb.Fatalf("decode %s: %v", msg, err)
	}
	return m
}

func TestAppendMessage_SpecExample(t *testing.T) {
	m := &router.Message{
		Channel: "shard:t1:42", Op: cdc.OpUpdate, Table: "public.shards", Rule: "shard-structured",
		Keys: []string{"tenant:t1:shard:42:structured"},
	}
	got := string(publisher.AppendMessage(nil, m, cdc.LSN(0x1A2B3C4), 1234, commitTime))
	want := `{"v":1,"op":"update","table":"public.shards","rule":"shard-structured",` +
		`"keys":["tenant:t1:shard:42:structured"],"lsn":"0/1A2B3C4","xid":1234,` +
		`"commit_time":"2026-11-22T10:00:00.123456Z"}`
	if got != want {
		t.Errorf("AppendMessage =\n%s\nwant\n%s", got, want)
	}
}

func TestAppendMessage_Fields(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		msg  router.Message
		lsn  cdc.LSN
		xid  uint32
		at   time.Time
		want map[string]any
	}{
		{
			name: "insert",
			msg:  router.Message{Op: cdc.OpInsert, Table: "public.users", Rule: "user-profile", Keys: []string{"a", "b"}},
			lsn:  0x16_B374D848, xid: 7, at: commitTime,
			want: map[string]any{"v": json.Number("1"), "op": "insert", "table": "public.users", "rule": "user-profile",
				"keys": []any{"a", "b"}, "lsn": "16/B374D848", "xid": json.Number("7"),
				"commit_time": "2026-11-22T10:00:00.123456Z"},
		},
		{
			name: "delete with patterns, local time and nanoseconds",
			msg: router.Message{Op: cdc.OpDelete, Table: "public.shards", Rule: "r",
				Keys: []string{"k"}, Patterns: []string{`tenant:\*:vsearch:*`}},
			lsn: 0, xid: math.MaxUint32, at: time.Date(2026, 1, 2, 4, 5, 6, 999999999, cet),
			want: map[string]any{"v": json.Number("1"), "op": "delete", "table": "public.shards", "rule": "r",
				"keys": []any{"k"}, "patterns": []any{`tenant:\*:vsearch:*`}, "lsn": "0/0",
				"xid": json.Number("4294967295"), "commit_time": "2026-01-02T03:05:06.999999Z"},
		},
		{
			name: "truncate without keys",
			msg:  router.Message{Op: cdc.OpTruncate, Table: "public.shards", Rule: "r", Patterns: []string{"t:*"}},
			lsn:  math.MaxUint64, xid: 0, at: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			want: map[string]any{"v": json.Number("1"), "op": "truncate", "table": "public.shards", "rule": "r",
				"keys": []any{}, "patterns": []any{"t:*"}, "lsn": "FFFFFFFF/FFFFFFFF",
				"xid": json.Number("0"), "commit_time": "2026-01-02T03:04:05.000000Z"},
		},
		{
			name: "truncate bumping a namespace",
			msg: router.Message{Op: cdc.OpTruncate, Table: "public.settings", Rule: "r",
				Namespaces: []string{"settings:v"}},
			lsn: 0x10, xid: 3, at: commitTime,
			want: map[string]any{"v": json.Number("1"), "op": "truncate", "table": "public.settings", "rule": "r",
				"keys": []any{}, "namespaces": []any{"settings:v"}, "lsn": "0/10",
				"xid": json.Number("3"), "commit_time": "2026-11-22T10:00:00.123456Z"},
		},
		{
			name: "empty patterns are left out",
			msg:  router.Message{Op: cdc.OpUpdate, Table: "public.t", Rule: "r", Keys: []string{"k"}, Patterns: []string{}},
			lsn:  0x1A2B3C4, xid: 1, at: commitTime,
			want: map[string]any{"v": json.Number("1"), "op": "update", "table": "public.t", "rule": "r",
				"keys": []any{"k"}, "lsn": "0/1A2B3C4", "xid": json.Number("1"),
				"commit_time": "2026-11-22T10:00:00.123456Z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := publisher.AppendMessage(nil, &tt.msg, tt.lsn, tt.xid, tt.at)
			got := decode(t, out)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("AppendMessage = %s\ndecoded %#v\nwant    %#v", out, got, tt.want)
			}
			if lsn := got["lsn"]; lsn != tt.lsn.String() {
				t.Errorf("lsn %v, want PostgreSQL's spelling %s", lsn, tt.lsn)
			}
			if ct, _ := got["commit_time"].(string); !timeRE.MatchString(ct) {
				t.Errorf("commit_time %q is not UTC with 6 fractional digits", ct)
			}
			if _, ok := got["channel"]; ok {
				t.Errorf("message carries the channel: %s", out)
			}
		})
	}
}

func TestAppendMessage_AppendsToDst(t *testing.T) {
	m := &router.Message{Op: cdc.OpInsert, Table: "public.t", Rule: "r", Keys: []string{"k"}}
	want := publisher.AppendMessage(nil, m, 1, 2, commitTime)
	got := publisher.AppendMessage([]byte("prefix|"), m, 1, 2, commitTime)
	if string(got) != "prefix|"+string(want) {
		t.Errorf("AppendMessage(prefix) = %q, want %q", got, "prefix|"+string(want))
	}
}

// jsonRoundTrip is what a subscriber gets for s when encoding/json encodes
// it (invalid UTF-8 becomes U+FFFD).
func jsonRoundTrip(tb testing.TB, s string) string {
	tb.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		tb.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		tb.Fatal(err)
	}
	return out
}

type decoded struct {
	Table    string   `json:"table"`
	Rule     string   `json:"rule"`
	Keys     []string `json:"keys"`
	Patterns []string `json:"patterns"`
}

func checkStrings(tb testing.TB, s string) {
	tb.Helper()
	m := &router.Message{Op: cdc.OpUpdate, Table: s, Rule: s, Keys: []string{s, "k2"}, Patterns: []string{s}}
	out := publisher.AppendMessage(nil, m, 0x1A2B3C4, 9, commitTime)
	if !json.Valid(out) {
		tb.Fatalf("AppendMessage(%q) is not valid JSON: %s", s, out)
	}
	var got decoded
	if err := json.Unmarshal(out, &got); err != nil {
		tb.Fatalf("unmarshal %s: %v", out, err)
	}
	want := jsonRoundTrip(tb, s)
	exp := decoded{Table: want, Rule: want, Keys: []string{want, "k2"}, Patterns: []string{want}}
	if !reflect.DeepEqual(got, exp) {
		tb.Errorf("AppendMessage(%q) decodes to %+v, want %+v", s, got, exp)
	}
}

func TestAppendMessage_StringEscaping(t *testing.T) {
	tests := []struct {
		name, s string
	}{
		{"plain", "tenant:t1:shard:42"},
		{"empty", ""},
		{"quotes", `say "hi"`},
		{"backslashes", `C:\dir\\x\`},
		{"glob escapes", `tenant:\*:vsearch:*`},
		{"whitespace controls", "tab\tnl\nret\rff\fbs\b"},
		{"other controls", "\x00\x01\x1f\x7f"},
		{"html", "<b>&amp;</b>"},
		{"invalid UTF-8", "bad\xff\xfeend"},
		{"truncated sequence", "euro\xe2\x82"},
		{"surrogate half", "\xed\xa0\x80"},
		{"line separators", "a\u2028b\u2029c"},
		{"non-ASCII", "ünïcødé 日本 😀"},
		{"replacement char itself", "\ufffd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkStrings(t, tt.s)
			out := publisher.AppendMessage(nil, &router.Message{Op: cdc.OpInsert, Keys: []string{tt.s}}, 0, 0, commitTime)
			for _, c := range out {
				if c < 0x20 {
					t.Errorf("raw control byte %#x in %q", c, out)
				}
			}
			if bytes.Contains(out, []byte("\u2028")) || bytes.Contains(out, []byte("\u2029")) {
				t.Errorf("raw U+2028/U+2029 in %q, want them escaped", out)
			}
		})
	}
}

func TestAppendHeartbeat(t *testing.T) {
	tests := []struct {
		name string
		lsn  cdc.LSN
		now  time.Time
		want string
	}{
		{
			name: "spec",
			lsn:  0x1A2B3C4, now: commitTime,
			want: `{"v":1,"op":"heartbeat","lsn":"0/1A2B3C4","time":"2026-11-22T10:00:00.123456Z"}`,
		},
		{
			name: "local time and high lsn",
			lsn:  0xAB_00000001, now: time.Date(2026, 3, 1, 0, 30, 0, 1000, time.FixedZone("X", -2*3600)),
			want: `{"v":1,"op":"heartbeat","lsn":"AB/1","time":"2026-03-01T02:30:00.000001Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := publisher.AppendHeartbeat(nil, tt.lsn, tt.now)
			if string(out) != tt.want {
				t.Errorf("AppendHeartbeat = %s, want %s", out, tt.want)
			}
			m := decode(t, out)
			if len(m) != 4 || m["op"] != "heartbeat" || m["v"] != json.Number("1") || m["lsn"] != tt.lsn.String() {
				t.Errorf("heartbeat fields %v", m)
			}
			if tm, _ := m["time"].(string); !timeRE.MatchString(tm) {
				t.Errorf("time %q is not UTC with 6 fractional digits", tm)
			}
		})
	}
}

func TestHeartbeatChannel(t *testing.T) {
	if got := publisher.HeartbeatChannel("cache:invalidate:"); got != "cache:invalidate:_heartbeat" {
		t.Errorf("HeartbeatChannel = %q", got)
	}
	if got := publisher.JournalKey("cache:invalidate:"); got != "cache:invalidate:_journal" {
		t.Errorf("JournalKey = %q", got)
	}
}

func FuzzAppendMessage(f *testing.F) {
	for _, s := range []string{"", "tenant:t1:shard:42", `"\`, "\x00\n", "\xff", "\u2028", "\xed\xa0\x80", "😀", strings.Repeat("\\", 9)} {
		f.Add(s, "rule")
	}
	f.Fuzz(func(t *testing.T, key, rule string) {
		m := &router.Message{Op: cdc.OpDelete, Table: "public.t", Rule: rule, Keys: []string{key, key + key}, Patterns: []string{key}}
		out := publisher.AppendMessage(nil, m, 0x1A2B3C4, 1, commitTime)
		if !json.Valid(out) {
			t.Fatalf("AppendMessage(key %q, rule %q) is not valid JSON: %s", key, rule, out)
		}
		var got decoded
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		k := jsonRoundTrip(t, key)
		want := decoded{Table: "public.t", Rule: jsonRoundTrip(t, rule), Keys: []string{k, jsonRoundTrip(t, key+key)}, Patterns: []string{k}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("AppendMessage(key %q, rule %q) decodes to %+v, want %+v", key, rule, got, want)
		}
	})
}
