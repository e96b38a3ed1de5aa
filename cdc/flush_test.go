package cdc

import (
	"slices"
	"testing"
)

// TestFlushRequest checks that a flush request is read back as written,
// and that a message of another prefix or for another slot, or naming no
// table, is not one.
func TestFlushRequest(t *testing.T) {
	content := []byte("slot_a\npublic.users\nother.t")
	if tables, ok := FlushRequest("slot_a", flushPrefix, content); !ok || !slices.Equal(tables, []string{"public.users", "other.t"}) {
		t.Errorf("FlushRequest = %q, %v; want [public.users other.t], true", tables, ok)
	}
	for _, c := range []struct {
		slot, prefix, content string
	}{
		{"slot_b", flushPrefix, string(content)},
		{"slot_a", "invalidator.probe", string(content)},
		{"slot_a", flushPrefix, "slot_a"},
		{"slot_a", flushPrefix, ""},
	} {
		if tables, ok := FlushRequest(c.slot, c.prefix, []byte(c.content)); ok {
			t.Errorf("FlushRequest(%q, %q, %q) = %q, true; want not a request", c.slot, c.prefix, c.content, tables)
		}
	}
	want := `SELECT pg_catalog.pg_logical_emit_message(true, 'invalidator.flush', 'slot_a
public.users
other.t')`
	if got := flushRequestSQL("slot_a", []string{"public.users", "other.t"}); got != want {
		t.Errorf("flushRequestSQL = %s, want %s", got, want)
	}
}
