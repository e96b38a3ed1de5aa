package resp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"
)

// Value is one whole reply with its contents: what a query (SENTINEL,
// ROLE, WAIT) needs, where Reply keeps only what a write's reply says.
type Value struct {
	Kind  Kind
	Str   string  // a Status's or Bulk's text
	Int   int64   // an Integer's value
	Err   Error   // an ErrorReply's message
	Nil   bool    // a nil bulk string or nil array
	Elems []Value // an Array's elements
}

// maxValueBulk bounds a bulk string ReadValue accepts: queries answer
// with addresses, roles and counts.
const maxValueBulk = 1 << 20

// ReadValue reads one whole reply from r, contents included.
func ReadValue(r *bufio.Reader) (Value, error) {
	return readValue(r, 0)
}

func readValue(r *bufio.Reader, depth int) (Value, error) {
	kind, body, err := readLine(r)
	if err != nil {
		return Value{}, err
	}
	v := Value{Kind: kind}
	switch v.Kind {
	case Status:
		v.Str = string(body)
	case ErrorReply:
		v.Err = Error(body)
	case Integer:
		if v.Int, err = parseInt(body); err != nil {
			return Value{}, err
		}
	case Bulk, Array:
		n, err := parseLen(body)
		if err != nil {
			return Value{}, err
		}
		switch {
		case n < 0:
			v.Nil = true
		case v.Kind == Bulk:
			v.Str, err = readBulk(r, n)
		default:
			v.Elems, err = readElems(r, n, depth)
		}
		if err != nil {
			return Value{}, err
		}
	default:
		return Value{}, fmt.Errorf("%w: unknown type %q", ErrProtocol, byte(kind))
	}
	return v, nil
}

// Do sends one command and returns its whole reply. An error reply is
// returned as a Value of kind ErrorReply, not as an error.
func (c *Conn) Do(ctx context.Context, args ...string) (Value, error) {
	return c.do(ctx, 0, args...)
}

// do is Do allowing the reply extra time beyond the read timeout (a
// command that blocks, such as WAIT).
func (c *Conn) do(ctx context.Context, extra time.Duration, args ...string) (Value, error) {
	b := AppendCommand(nil, len(args))
	for _, a := range args {
		b = AppendString(b, a)
	}
	if err := c.Write(ctx, b); err != nil {
		return Value{}, err
	}
	timeout := c.opts.ReadTimeout
	if timeout > 0 {
		timeout += extra
	}
	stop, err := c.begin(ctx, c.nc.SetReadDeadline, timeout)
	if err != nil {
		return Value{}, fmt.Errorf("redis read: %w", err)
	}
	v, err := ReadValue(c.br)
	if err := c.done(ctx, stop, "redis read ("+args[0]+")", err); err != nil {
		return Value{}, err
	}
	return v, nil
}

// readBulk reads the n bytes of a bulk string and its CRLF.
func readBulk(r *bufio.Reader, n int64) (string, error) {
	if n > maxValueBulk {
		return "", fmt.Errorf("%w: a bulk string of %d bytes", ErrProtocol, n)
	}
	b := make([]byte, n+2)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}

// readElems reads the n elements of an array at depth.
func readElems(r *bufio.Reader, n int64, depth int) ([]Value, error) {
	if depth == maxDepth {
		return nil, fmt.Errorf("%w: arrays nested deeper than %d", ErrProtocol, maxDepth)
	}
	var elems []Value
	for range n {
		e, err := readValue(r, depth+1)
		if err != nil {
			return nil, err
		}
		elems = append(elems, e)
	}
	return elems, nil
}
