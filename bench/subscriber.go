package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// record is one invalidation message as the subscriber received it. It
// holds no pointers, so a million of them cost the garbage collector
// nothing to scan.
type record struct {
	atNS     int64 // when the subscriber had read and parsed it, Unix ns
	commitUS int64 // commit_time, microseconds since the Unix epoch
	lsn      uint64
	xid      uint32
	wide     bool // a wide-form message (channel with '*')
	// channel is a hash of the channel (the subject on NATS), to tell a
	// message received twice from two messages of one transaction
	channel uint64
}

func (r record) at() time.Time { return time.Unix(0, r.atNS) }

// recordsCap is the room reserved for records: more than any workload
// receives (the 1,000,000-row transaction, or about 1.1 M unthrottled
// commits), so that appending never copies them. It is address space
// only: pages the records do not reach are never touched.
const recordsCap = 1 << 22

// subReadBuffer is the subscriber's read buffer: a burst of 200,000
// messages is read in few system calls.
const subReadBuffer = 1 << 20

// subscriber receives every message on the shard channels (PSUBSCRIBE on
// its own connection) and keeps a compact record of each. It is the
// suite's measuring instrument and shares the machine with the daemon, so
// it is written to cost little: one buffered reader, messages parsed in
// place, no allocation per message. go-redis's PubSub cost about 3 µs of
// CPU a message, taken from the daemon and PostgreSQL's walsender.
type subscriber struct {
	addr, pattern string
	recordLog

	closing atomic.Bool
	connMu  sync.Mutex
	conn    net.Conn
	done    chan struct{}
}

func startSubscriber(ctx context.Context, addr, pattern string) (*subscriber, error) {
	s := &subscriber{addr: addr, pattern: pattern, recordLog: recordLog{recs: make([]record, 0, recordsCap)}, done: make(chan struct{})}
	r, err := s.subscribe(ctx)
	if err != nil {
		return nil, err
	}
	go s.loop(r)
	return s, nil
}

// subscribe connects, subscribes and reads the confirmation.
func (s *subscriber) subscribe(ctx context.Context) (*bufio.Reader, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	cmd := fmt.Sprintf("*2\r\n$10\r\nPSUBSCRIBE\r\n$%d\r\n%s\r\n", len(s.pattern), s.pattern)
	if _, err := c.Write([]byte(cmd)); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("psubscribe %s: %w", s.pattern, err)
	}
	r := bufio.NewReaderSize(c, subReadBuffer)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	kind, err := readPush(r, nil)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil || kind != "psubscribe" {
		_ = c.Close()
		return nil, fmt.Errorf("psubscribe %s: confirmation %q: %v", s.pattern, kind, err)
	}
	s.connMu.Lock()
	s.conn = c
	s.connMu.Unlock()
	if s.closing.Load() { // close ran meanwhile
		_ = c.Close()
	}
	return r, nil
}

func (s *subscriber) loop(r *bufio.Reader) {
	defer close(s.done)
	for {
		_, err := readPush(r, s.add)
		if err == nil {
			continue
		}
		if s.closing.Load() {
			return
		}
		// Reconnect and subscribe again: a gap shows as lost messages.
		for {
			if s.closing.Load() {
				return
			}
			var serr error
			if r, serr = s.subscribe(context.Background()); serr == nil {
				break
			}
			time.Sleep(100 * time.Millisecond) // the server is away: no hurry
		}
	}
}

// add records one message; it is called with the channel and payload still
// in the read buffer.
func (s *subscriber) add(channel, payload []byte) {
	s.recordLog.add(payload, bytes.IndexByte(channel, '*') >= 0, hashChannel(channel))
}

// hashChannel is FNV-1a (64 bits): 200,000 channels of a transaction
// collide with a chance of about one in a hundred million.
func hashChannel[T string | []byte](b T) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(b); i++ {
		h = (h ^ uint64(b[i])) * 1099511628211
	}
	return h
}

func (s *subscriber) close() {
	s.closing.Store(true)
	s.connMu.Lock()
	if s.conn != nil {
		_ = s.conn.Close()
	}
	s.connMu.Unlock()
	<-s.done
}

// recordLog is what a subscriber received: its records, appended under
// mu and never modified once appended, and the messages that did not
// parse.
type recordLog struct {
	mu   sync.Mutex
	recs []record
	bad  int
}

// add parses payload and records it as received now, on a channel (or
// subject) whose hash is ch; a payload that does not parse is counted.
func (l *recordLog) add(payload []byte, wide bool, ch uint64) {
	r, ok := parseMessage(payload)
	r.atNS = time.Now().UnixNano()
	r.wide, r.channel = wide, ch
	l.mu.Lock()
	if ok {
		l.recs = append(l.recs, r)
	} else {
		l.bad++
	}
	l.mu.Unlock()
}

// reset forgets every record. Slices returned by from before are not used
// after it.
func (l *recordLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs, l.bad = l.recs[:0], 0
}

// from returns the records received after the first i, and the new count.
// Records are never modified once appended, so the slice may be read
// without the lock.
func (l *recordLog) from(i int) ([]record, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i = min(i, len(l.recs))
	return l.recs[i:len(l.recs):len(l.recs)], len(l.recs)
}

// unparsed is how many messages did not parse.
func (l *recordLog) unparsed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bad
}

var errNotPush = errors.New("not a pub/sub push")

// readPush reads one pub/sub push (an array of bulk strings and integers)
// and returns its kind ("pmessage", "psubscribe"...). For a pmessage it
// calls onMessage with the channel and payload, which are valid only
// during the call.
func readPush(r *bufio.Reader, onMessage func(channel, payload []byte)) (string, error) {
	n, err := readHeader(r, '*')
	if err != nil {
		return "", err
	}
	if n < 1 || n > 4 {
		return "", fmt.Errorf("%w: array of %d", errNotPush, n)
	}
	kind, err := readBulk(r)
	if err != nil {
		return "", err
	}
	var k string // a constant: kind is in the buffer, which moves on
	switch string(kind) {
	case "pmessage":
		k = "pmessage"
	case "psubscribe":
		k = "psubscribe"
	default:
		k = "other"
	}
	isMessage := k == "pmessage" && n == 4 && onMessage != nil
	var channel []byte
	for i := 1; i < n; i++ {
		b, err := r.Peek(1)
		if err != nil {
			return k, err
		}
		if b[0] == ':' { // the subscription count
			if _, err := readHeader(r, ':'); err != nil {
				return k, err
			}
			continue
		}
		v, err := readBulk(r)
		if err != nil {
			return k, err
		}
		switch {
		case !isMessage:
		case i == 2:
			channel = append(channel[:0], v...) // small: the payload may move the buffer
		case i == 3:
			onMessage(channel, v)
		}
	}
	return k, nil
}

// readHeader reads a line "<prefix><int>\r\n".
func readHeader(r *bufio.Reader, prefix byte) (int, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 4 || line[0] != prefix || line[len(line)-2] != '\r' {
		return 0, fmt.Errorf("%w: line %q", errNotPush, line)
	}
	digits, negative := line[1:len(line)-2], false
	if len(digits) > 0 && digits[0] == '-' {
		digits, negative = digits[1:], true
	}
	n, ok := parseUint(digits, 10, 31)
	if !ok {
		return 0, fmt.Errorf("%w: line %q", errNotPush, line)
	}
	if negative {
		return -int(n), nil
	}
	return int(n), nil
}

// readBulk reads one bulk string. The result points into r's buffer when
// it fits there, and is valid until the next read.
func readBulk(r *bufio.Reader) ([]byte, error) {
	n, err := readHeader(r, '$')
	if err != nil {
		return nil, err
	}
	if n < 0 || n+2 > r.Size() {
		return nil, fmt.Errorf("%w: bulk string of %d bytes", errNotPush, n)
	}
	b, err := r.Peek(n + 2)
	if err != nil {
		return nil, err
	}
	if _, err := r.Discard(n + 2); err != nil {
		return nil, err
	}
	return b[:n], nil
}

// parseMessage takes lsn, xid and commit_time from a message. They follow
// the keys in the daemon's JSON, so they are looked up from the end; this
// costs far less than decoding the JSON, which matters when 200,000
// messages arrive at once on a machine the daemon shares.
func parseMessage(b []byte) (record, bool) {
	var r record
	field := func(name string) []byte {
		i := bytes.LastIndex(b, []byte(name))
		if i < 0 {
			return nil
		}
		v := b[i+len(name):]
		end := bytes.IndexAny(v, `",}`)
		if end < 0 {
			return nil
		}
		return v[:end]
	}
	hi, lo, ok := bytes.Cut(field(`"lsn":"`), []byte("/"))
	h, okH := parseUint(hi, 16, 32)
	l, okL := parseUint(lo, 16, 32)
	xid, okX := parseUint(field(`"xid":`), 10, 32)
	ct, okT := parseCommitTime(field(`"commit_time":"`))
	if !ok || !okH || !okL || !okX || !okT {
		return r, false
	}
	r.lsn, r.xid, r.commitUS = h<<32|l, uint32(xid), ct
	return r, true
}

// parseUint parses b (1 to 16 digits in base 10 or 16) without allocating.
func parseUint(b []byte, base uint64, bits int) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		n = n*base + d
	}
	return n, n>>bits == 0
}

// parseCommitTime parses "2006-01-02T15:04:05.000000Z" (the daemon's
// commit_time) into microseconds since the Unix epoch.
func parseCommitTime(b []byte) (int64, bool) {
	const layout = "2006-01-02T15:04:05.000000Z"
	if len(b) != len(layout) {
		return 0, false
	}
	for i := range layout {
		isDigit := layout[i] >= '0' && layout[i] <= '9'
		if isDigit != (b[i] >= '0' && b[i] <= '9') || (!isDigit && b[i] != layout[i]) {
			return 0, false
		}
	}
	num := func(from, to int) int {
		n := 0
		for _, c := range b[from:to] {
			n = n*10 + int(c-'0')
		}
		return n
	}
	t := time.Date(num(0, 4), time.Month(num(5, 7)), num(8, 10), num(11, 13), num(14, 16), num(17, 19), 0, time.UTC)
	return t.UnixMicro() + int64(num(20, 26)), true
}
