package resp

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Reply
	}{
		{"+OK\r\n", Reply{Kind: Status}},
		{"-WRONGTYPE Operation against a key\r\n", Reply{Kind: ErrorReply, Err: "WRONGTYPE Operation against a key"}},
		{":0\r\n", Reply{Kind: Integer}},
		{":1234\r\n", Reply{Kind: Integer, Int: 1234}},
		{":-12\r\n", Reply{Kind: Integer, Int: -12}},
		{"$5\r\nab\r\nc\r\n", Reply{Kind: Bulk, Int: 5}},
		{"$0\r\n\r\n", Reply{Kind: Bulk}},
		{"$-1\r\n", Reply{Kind: Bulk, Int: -1}},
		{"*-1\r\n", Reply{Kind: Array, Int: -1}},
		{"*0\r\n", Reply{Kind: Array}},
		{"*3\r\n:1\r\n$2\r\nhi\r\n*1\r\n-ERR inner\r\n", Reply{Kind: Array, Int: 3}},
	} {
		// followed by another reply, which must be read next: each reply is
		// consumed exactly
		r := bufio.NewReaderSize(strings.NewReader(tc.in+":7\r\n"), 40)
		got, err := ReadReply(r)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if next, err := ReadReply(r); err != nil || next != (Reply{Kind: Integer, Int: 7}) {
			t.Errorf("%q: the next reply read as %+v, %v", tc.in, next, err)
		}
	}
}

func TestReadReply_Malformed(t *testing.T) {
	for _, in := range []string{
		"OK\r\n",                   // no type
		"?1\r\n",                   // unknown type
		"+OK\n",                    // no CR
		"\r\n",                     // empty
		":\r\n",                    // no digits
		":12a\r\n",                 // not a number
		":-\r\n",                   // a sign alone
		":1234567890123456789\r\n", // too long
		"$-2\r\n",                  // negative length
		"*-5\r\n",                  // negative count
		strings.Repeat("*1\r\n", maxDepth+1) + ":1\r\n", // too deep
	} {
		_, err := ReadReply(bufio.NewReader(strings.NewReader(in)))
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%q: error %v, want ErrProtocol", in, err)
		}
	}
	// a line longer than the buffer
	r := bufio.NewReaderSize(strings.NewReader("-"+strings.Repeat("x", 100)+"\r\n"), 16)
	if _, err := ReadReply(r); !errors.Is(err, ErrProtocol) {
		t.Errorf("long line: error %v, want ErrProtocol", err)
	}
}

func TestReadReply_Truncated(t *testing.T) {
	for _, in := range []string{"", ":12", "$5\r\nab", "*2\r\n:1\r\n"} {
		_, err := ReadReply(bufio.NewReader(strings.NewReader(in)))
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: error %v, want EOF", in, err)
		}
	}
}

func TestReadReply_NoAllocation(t *testing.T) {
	in := strings.Repeat(":1\r\n$3\r\nabc\r\n+OK\r\n", 200)
	sr := strings.NewReader(in)
	r := bufio.NewReaderSize(sr, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		sr.Reset(in)
		r.Reset(sr)
		for range 600 {
			if _, err := ReadReply(r); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%.0f allocations for 600 replies, want 0", allocs)
	}
}
