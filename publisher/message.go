// Package publisher applies invalidations to Redis: it deletes keys,
// publishes one message per (transaction, channel), appends the journal, and
// reports each applied position so that it can be confirmed to PostgreSQL.
package publisher

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/router"
)

// MessageVersion is the "v" field of every message.
const MessageVersion = 1

// TimeLayout formats commit_time and time: UTC with microseconds.
const TimeLayout = "2006-01-02T15:04:05.000000Z"

// AppendMessage appends the JSON message of m (README, "Messages") to dst.
func AppendMessage(dst []byte, m *router.Message, lsn cdc.LSN, xid uint32, commitTime time.Time) []byte {
	return appendMessageTail(appendMessageHead(dst, m), lsn, xid, commitTime)
}

// appendMessageHead appends what is the message's own: everything before
// the transaction's lsn, xid and commit_time (appendMessageTail), which the
// messages of a transaction share and which is formatted once for them.
func appendMessageHead(dst []byte, m *router.Message) []byte {
	dst = append(dst, `{"v":1,"op":`...)
	dst = appendJSONString(dst, m.Op.String())
	dst = append(dst, `,"table":`...)
	dst = appendJSONString(dst, m.Table)
	dst = append(dst, `,"rule":`...)
	dst = appendJSONString(dst, m.Rule)
	dst = append(dst, `,"keys":`...)
	dst = appendJSONStrings(dst, m.Keys)
	if len(m.Patterns) > 0 {
		dst = append(dst, `,"patterns":`...)
		dst = appendJSONStrings(dst, m.Patterns)
	}
	if len(m.Namespaces) > 0 {
		dst = append(dst, `,"namespaces":`...)
		dst = appendJSONStrings(dst, m.Namespaces)
	}
	return dst
}

// appendMessageTail closes a message with its transaction's fields.
func appendMessageTail(dst []byte, lsn cdc.LSN, xid uint32, commitTime time.Time) []byte {
	dst = append(dst, `,"lsn":"`...)
	dst = appendLSN(dst, lsn)
	dst = append(dst, `","xid":`...)
	dst = strconv.AppendUint(dst, uint64(xid), 10)
	dst = append(dst, `,"commit_time":"`...)
	dst = AppendTime(dst, commitTime)
	return append(dst, `"}`...)
}

// AppendHeartbeat appends the heartbeat message (README, "Operating").
func AppendHeartbeat(dst []byte, lsn cdc.LSN, now time.Time) []byte {
	dst = append(dst, `{"v":1,"op":"heartbeat","lsn":"`...)
	dst = appendLSN(dst, lsn)
	dst = append(dst, `","time":"`...)
	dst = AppendTime(dst, now)
	return append(dst, `"}`...)
}

// AppendTime appends t as TimeLayout formats it (in UTC), at a third of
// the cost of time.Time.AppendFormat: it is written twice a transaction
// (the message and the journal entry). Years outside 0-9999 are left to
// AppendFormat.
func AppendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, TimeLayout)
	}
	hour, minute, sec := t.Clock()
	dst = appendDigits(dst, year, 4)
	dst = append(dst, '-')
	dst = appendDigits(dst, int(month), 2)
	dst = append(dst, '-')
	dst = appendDigits(dst, day, 2)
	dst = append(dst, 'T')
	dst = appendDigits(dst, hour, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, minute, 2)
	dst = append(dst, ':')
	dst = appendDigits(dst, sec, 2)
	dst = append(dst, '.')
	dst = appendDigits(dst, t.Nanosecond()/1000, 6)
	return append(dst, 'Z')
}

// appendDigits appends v (0 <= v < 10^width) in width decimal digits.
func appendDigits(dst []byte, v, width int) []byte {
	n := len(dst)
	for range width {
		dst = append(dst, 0)
	}
	for i := len(dst) - 1; i >= n; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
	return dst
}

// appendLSN appends lsn as PostgreSQL prints it: upper-case hex, "0/1A2B3C4".
func appendLSN(dst []byte, lsn cdc.LSN) []byte {
	dst = appendHexUpper(dst, uint32(lsn>>32))
	dst = append(dst, '/')
	return appendHexUpper(dst, uint32(lsn))
}

func appendHexUpper(dst []byte, v uint32) []byte {
	const digits = "0123456789ABCDEF"
	var tmp [8]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[v&0xf]
		v >>= 4
		if v == 0 {
			break
		}
	}
	return append(dst, tmp[i:]...)
}

func appendJSONStrings(dst []byte, ss []string) []byte {
	return appendJSONArray(dst, len(ss), func(i int) string { return ss[i] })
}

// appendJSONArray appends the JSON array of the n strings at(0)…at(n-1).
func appendJSONArray(dst []byte, n int, at func(int) string) []byte {
	dst = append(dst, '[')
	for i := range n {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, at(i))
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// jsonPlain has a '1' at each byte that a JSON string holds as it is
// (printable ASCII but '"' and '\\'): one lookup a byte, on the path of
// every key, a fifth faster than comparing.
const jsonPlain = "" +
	"00000000000000000000000000000000" + // 0x00-0x1f
	"11011111111111111111111111111111" + // 0x20-0x3f
	"11111111111111111111111111110111" + // 0x40-0x5f
	"11111111111111111111111111111111" + // 0x60-0x7f
	"00000000000000000000000000000000" + // 0x80-0x9f
	"00000000000000000000000000000000" + // 0xa0-0xbf
	"00000000000000000000000000000000" + // 0xc0-0xdf
	"00000000000000000000000000000000" // 0xe0-0xff

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does; U+2028 and U+2029 are escaped for JavaScript.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if jsonPlain[c] == '1' {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
