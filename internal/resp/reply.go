package resp

import (
	"bufio"
	"errors"
	"fmt"
)

// Reply is one reply, as much of it as a pipeline of writes needs: its
// kind, the integer of an integer reply and the message of an error reply.
// The body of a bulk string and the elements of an array are read and
// dropped.
type Reply struct {
	Kind Kind
	Int  int64 // an Integer's value
	Err  Error // an ErrorReply's message
}

// Kind is the type of a reply.
type Kind byte

// The kinds of RESP2 replies.
const (
	Status     Kind = '+'
	ErrorReply Kind = '-'
	Integer    Kind = ':'
	Bulk       Kind = '$'
	Array      Kind = '*'
)

// Error is an error reply from the server, such as "WRONGTYPE Operation
// against a key holding the wrong kind of value".
type Error string

func (e Error) Error() string { return string(e) }

// ErrProtocol is a reply that is not well-formed RESP2; the connection is
// out of step and must be closed.
var ErrProtocol = errors.New("malformed redis reply")

// maxDepth bounds the nesting of arrays a reply may have.
const maxDepth = 8

// ReadReply reads one whole reply from r.
func ReadReply(r *bufio.Reader) (Reply, error) {
	return readReply(r, 0)
}

// readLine reads the first line of a reply and returns its type and what
// follows the type, without the CRLF.
func readLine(r *bufio.Reader) (Kind, []byte, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, nil, fmt.Errorf("%w: a line longer than %d bytes", ErrProtocol, r.Size())
		}
		return 0, nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, nil, fmt.Errorf("%w: %q", ErrProtocol, line)
	}
	return Kind(line[0]), line[1 : len(line)-2], nil
}

func readReply(r *bufio.Reader, depth int) (Reply, error) {
	kind, body, err := readLine(r)
	if err != nil {
		return Reply{}, err
	}
	rep := Reply{Kind: kind}
	switch rep.Kind {
	case Status:
	case ErrorReply:
		rep.Err = Error(body)
	case Integer:
		if rep.Int, err = parseInt(body); err != nil {
			return Reply{}, err
		}
	case Bulk:
		n, err := parseLen(body)
		if err != nil {
			return Reply{}, err
		}
		if n >= 0 {
			if _, err := r.Discard(int(n) + 2); err != nil {
				return Reply{}, err
			}
		}
		rep.Int = n
	case Array:
		n, err := parseLen(body)
		if err != nil {
			return Reply{}, err
		}
		if depth == maxDepth {
			return Reply{}, fmt.Errorf("%w: arrays nested deeper than %d", ErrProtocol, maxDepth)
		}
		for range n {
			if _, err := readReply(r, depth+1); err != nil {
				return Reply{}, err
			}
		}
		rep.Int = n
	default:
		return Reply{}, fmt.Errorf("%w: unknown type %q", ErrProtocol, byte(kind))
	}
	return rep, nil
}

// parseLen parses the length of a bulk string or array: -1 (nil) or more.
func parseLen(b []byte) (int64, error) {
	n, err := parseInt(b)
	if err == nil && n < -1 {
		err = fmt.Errorf("%w: length %d", ErrProtocol, n)
	}
	return n, err
}

// parseInt parses a decimal integer of at most 18 digits, optionally
// negative (without the allocation strconv would make of a []byte).
func parseInt(b []byte) (int64, error) {
	digits := b
	if len(digits) > 0 && digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return 0, fmt.Errorf("%w: %q is not an integer", ErrProtocol, b)
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q is not an integer", ErrProtocol, b)
		}
		n = n*10 + int64(c-'0')
	}
	if len(digits) < len(b) {
		n = -n
	}
	return n, nil
}
