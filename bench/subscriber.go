package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// record is one invalidation message as the subscriber received it.
type record struct {
	at       time.Time // when ReceiveMessage returned it
	commitUS int64     // commit_time, microseconds since the Unix epoch
	lsn      uint64
	xid      uint32
	wide     bool // a wide-form message (channel with '*')
}

// subscriber receives every message on the shard channels (PSUBSCRIBE,
// one connection, go-redis) and keeps a compact record of each.
type subscriber struct {
	ps   *redis.PubSub
	mu   sync.Mutex
	recs []record
	bad  int // messages that did not parse
	done chan struct{}
}

func startSubscriber(ctx context.Context, rdb *redis.Client, pattern string) (*subscriber, error) {
	ps := rdb.PSubscribe(ctx, pattern)
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		_ = ps.Close()
		return nil, fmt.Errorf("psubscribe %s: %w", pattern, err)
	}
	s := &subscriber{ps: ps, done: make(chan struct{})}
	go s.loop()
	return s, nil
}

func (s *subscriber) loop() {
	defer close(s.done)
	ctx := context.Background()
	for {
		m, err := s.ps.ReceiveMessage(ctx)
		if err != nil {
			if errors.Is(err, redis.ErrClosed) {
				return
			}
			continue // go-redis reconnects and resubscribes; a gap shows as lost messages
		}
		at := time.Now()
		r, ok := parseMessage(m.Payload)
		s.mu.Lock()
		if ok {
			r.at = at
			r.wide = strings.IndexByte(m.Channel, '*') >= 0
			s.recs = append(s.recs, r)
		} else {
			s.bad++
		}
		s.mu.Unlock()
	}
}

func (s *subscriber) close() {
	_ = s.ps.Close()
	<-s.done
}

// reset forgets every record.
func (s *subscriber) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs, s.bad = nil, 0
}

// from returns the records received after the first i, and the new count.
// Records are never modified once appended, so the slice may be read
// without the lock.
func (s *subscriber) from(i int) ([]record, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i > len(s.recs) {
		i = len(s.recs)
	}
	return s.recs[i:len(s.recs):len(s.recs)], len(s.recs)
}

func (s *subscriber) unparsed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad
}

// parseMessage takes lsn, xid and commit_time from a message. They follow
// the keys in the daemon's JSON, so they are looked up from the end; this
// costs far less than decoding the JSON, which matters when 200,000
// messages arrive at once on a machine the daemon shares.
func parseMessage(payload string) (record, bool) {
	var r record
	b := []byte(payload)
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
	lsn, err := parseLSN(string(field(`"lsn":"`)))
	if err != nil {
		return r, false
	}
	xid, err := strconv.ParseUint(string(field(`"xid":`)), 10, 32)
	if err != nil {
		return r, false
	}
	ct, err := time.Parse("2006-01-02T15:04:05.000000Z", string(field(`"commit_time":"`)))
	if err != nil {
		return r, false
	}
	r.lsn, r.xid, r.commitUS = lsn, uint32(xid), ct.UnixMicro()
	return r, true
}
