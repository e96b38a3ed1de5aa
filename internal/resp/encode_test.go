package resp

import (
	"bufio"
	"bytes"
	"math"
	"testing"
)

func TestAppend(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"command", AppendCommand(nil, 3), "*3\r\n"},
		{"bulk", AppendBulk(nil, []byte("a\r\nb")), "$4\r\na\r\nb\r\n"},
		{"empty bulk", AppendBulk(nil, nil), "$0\r\n\r\n"},
		{"string", AppendString(nil, "UNLINK"), "$6\r\nUNLINK\r\n"},
		{"strings", AppendStrings(nil, "cache:", "user:1"), "$12\r\ncache:user:1\r\n"},
		{"strings, empty prefix", AppendStrings(nil, "", "x"), "$1\r\nx\r\n"},
		{"int", AppendInt(nil, 100000), "$6\r\n100000\r\n"},
		{"negative int", AppendInt(nil, -7), "$2\r\n-7\r\n"},
		{"min int", AppendInt(nil, math.MinInt64), "$20\r\n-9223372036854775808\r\n"},
		{"appends", AppendString([]byte("*1\r\n"), "PING"), "*1\r\n$4\r\nPING\r\n"},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
}

// A command built with the Append functions is one well-formed array of
// bulk strings: the reply reader, which reads the same grammar, consumes
// it exactly.
func TestAppend_WellFormed(t *testing.T) {
	var b []byte
	b = AppendString(AppendCommand(b, 4), "PUBLISH")
	b = AppendStrings(b, "p:", "c")
	b = AppendBulk(b, bytes.Repeat([]byte{'\r', '\n', 0}, 1000))
	b = AppendInt(b, 42)
	b = AppendString(AppendCommand(b, 1), "PING")
	r := bufio.NewReader(bytes.NewReader(b))
	for i, want := range []int64{4, 1} {
		rep, err := ReadReply(r)
		if err != nil || rep.Kind != Array || rep.Int != want {
			t.Fatalf("command %d: %+v, %v; want an array of %d", i, rep, err, want)
		}
	}
	if n := r.Buffered(); n != 0 {
		t.Errorf("%d bytes left over", n)
	}
}

// Appending to a buffer with room allocates nothing.
func TestAppend_NoAllocation(t *testing.T) {
	buf := make([]byte, 0, 1024)
	payload := []byte(`{"v":1}`)
	allocs := testing.AllocsPerRun(100, func() {
		b := AppendString(AppendCommand(buf[:0], 3), "PUBLISH")
		b = AppendStrings(b, "cache:", "user:1")
		b = AppendBulk(b, payload)
		_ = AppendInt(b, 123456)
	})
	if allocs != 0 {
		t.Errorf("%.0f allocations, want 0", allocs)
	}
}
