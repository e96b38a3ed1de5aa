package resp

import (
	"bufio"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestReadValue(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Value
	}{
		{"+OK\r\n", Value{Kind: Status, Str: "OK"}},
		{"-ERR no such master\r\n", Value{Kind: ErrorReply, Err: "ERR no such master"}},
		{":2\r\n", Value{Kind: Integer, Int: 2}},
		{"$9\r\n127.0.0.1\r\n", Value{Kind: Bulk, Str: "127.0.0.1"}},
		{"$4\r\na\r\nb\r\n", Value{Kind: Bulk, Str: "a\r\nb"}},
		{"$-1\r\n", Value{Kind: Bulk, Nil: true}},
		{"*-1\r\n", Value{Kind: Array, Nil: true}},
		{"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n", Value{Kind: Array, Elems: []Value{{Kind: Bulk, Str: "127.0.0.1"}, {Kind: Bulk, Str: "6379"}}}},
		// ROLE of a master with one replica
		{"*3\r\n$6\r\nmaster\r\n:42\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n$2\r\n42\r\n", Value{Kind: Array, Elems: []Value{
			{Kind: Bulk, Str: "master"}, {Kind: Integer, Int: 42},
			{Kind: Array, Elems: []Value{{Kind: Array, Elems: []Value{{Kind: Bulk, Str: "127.0.0.1"}, {Kind: Bulk, Str: "6380"}, {Kind: Bulk, Str: "42"}}}}},
		}}},
	} {
		r := bufio.NewReader(strings.NewReader(tc.in + ":7\r\n"))
		got, err := ReadValue(r)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if next, err := ReadValue(r); err != nil || next.Kind != Integer || next.Int != 7 {
			t.Errorf("%q: the next reply read as %+v, %v", tc.in, next, err)
		}
	}
	for _, bad := range []string{"?x\r\n", ":1\n", "$2000000\r\n", strings.Repeat("*1\r\n", maxDepth+1) + ":1\r\n"} {
		if _, err := ReadValue(bufio.NewReader(strings.NewReader(bad))); !errors.Is(err, ErrProtocol) {
			t.Errorf("%q: %v, want ErrProtocol", bad, err)
		}
	}
}
