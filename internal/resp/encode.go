// Package resp speaks the Redis protocol (RESP2) on one connection for a
// pipeline whose commands are appended straight into a byte buffer: no
// command object, argument slice or boxed value per command, which is most
// of what a general client spends on a small command.
//
// It is deliberately small: the commands a pipeline of writes needs, the
// replies those commands give, and a connection with authentication,
// database selection and deadlines. Everything else goes through go-redis.
package resp

import "strconv"

// AppendCommand appends the header of a command of n arguments (its name
// included); the n arguments follow as bulk strings.
func AppendCommand(dst []byte, n int) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}

// AppendBulk appends b as a bulk string.
func AppendBulk(dst, b []byte) []byte {
	dst = AppendBulkHeader(dst, len(b))
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendString appends s as a bulk string.
func AppendString(dst []byte, s string) []byte {
	dst = AppendBulkHeader(dst, len(s))
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}

// AppendStrings appends a followed by b as one bulk string (a prefix and a
// name, without joining them in a string first).
func AppendStrings(dst []byte, a, b string) []byte {
	dst = AppendBulkHeader(dst, len(a)+len(b))
	dst = append(dst, a...)
	dst = append(dst, b...)
	return append(dst, '\r', '\n')
}

// AppendInt appends n in decimal as a bulk string.
func AppendInt(dst []byte, n int64) []byte {
	var digits [20]byte
	return AppendBulk(dst, strconv.AppendInt(digits[:0], n, 10))
}

// AppendBulkHeader appends the header of a bulk string of n bytes. The n
// bytes and a CRLF must follow; AppendBulk and AppendString do all three.
func AppendBulkHeader(dst []byte, n int) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(n), 10)
	return append(dst, '\r', '\n')
}
