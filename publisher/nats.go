package publisher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSSink bridges messages to NATS, after Redis has applied them: core
// subjects (a batch counts once the connection's flush succeeded) or
// JetStream (once every publish is acknowledged; a Nats-Msg-Id made of the
// slot, the commit LSN and the subject lets the server drop re-sends).
type NATSSink struct {
	nc      *nats.Conn
	js      jetstream.JetStream // nil: core NATS
	slot    string
	timeout time.Duration
	hbSubj  string
	buf     []byte
	futures []jetstream.PubAckFuture
}

// NewNATSSink returns a sink on nc; js nil means core NATS. subjectPrefix
// is the router's SubjectPrefix (heartbeats go to it + "_heartbeat").
func NewNATSSink(nc *nats.Conn, js jetstream.JetStream, slot, subjectPrefix string, timeout time.Duration) *NATSSink {
	return &NATSSink{nc: nc, js: js, slot: slot, timeout: timeout, hbSubj: subjectPrefix + "_heartbeat"}
}

// MsgID is the JetStream de-duplication id of a message.
func MsgID(slot string, commitLSN fmt.Stringer, subject string) string {
	return slot + "/" + commitLSN.String() + "/" + subject
}

// Publish sends every message of the batch and waits until NATS has them.
// It returns how many it sent. A failed batch is sent again whole.
func (s *NATSSink) Publish(ctx context.Context, batch []Applied) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n := 0
	s.futures = s.futures[:0]
	for _, c := range batch {
		res := c.Txn.Result()
		for i := range res.NumMessages() {
			m := res.Message(i)
			if m.Subject == "" {
				continue
			}
			if s.js == nil {
				// core publish copies the payload into the connection's buffer
				s.buf = AppendMessage(s.buf[:0], &m, c.CommitLSN, c.Xid, c.CommitTime)
				if err := s.nc.Publish(m.Subject, s.buf); err != nil {
					return n, fmt.Errorf("nats publish %s: %w", m.Subject, err)
				}
			} else {
				// an async publish may be retried by the client: its own payload
				payload := AppendMessage(nil, &m, c.CommitLSN, c.Xid, c.CommitTime)
				msg := &nats.Msg{Subject: m.Subject, Data: payload, Header: nats.Header{}}
				f, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(MsgID(s.slot, c.CommitLSN, m.Subject)))
				if err != nil {
					return n, fmt.Errorf("jetstream publish %s: %w", m.Subject, err)
				}
				s.futures = append(s.futures, f)
			}
			n++
		}
	}
	if s.js == nil {
		if err := s.nc.FlushWithContext(ctx); err != nil {
			return n, fmt.Errorf("nats flush: %w", err)
		}
		return n, nil
	}
	for _, f := range s.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return n, fmt.Errorf("jetstream ack %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return n, fmt.Errorf("jetstream ack %s: %w", f.Msg().Subject, ctx.Err())
		}
	}
	clear(s.futures)
	return n, nil
}

// Heartbeat publishes the heartbeat on core NATS (best effort: heartbeats
// are not stored in JetStream).
func (s *NATSSink) Heartbeat(payload []byte) error {
	if err := s.nc.Publish(s.hbSubj, payload); err != nil {
		return fmt.Errorf("nats heartbeat: %w", err)
	}
	return nil
}

// EnsureStream creates the JetStream stream for the subjects when it is
// missing, with a de-duplication window long enough to cover a restart.
func EnsureStream(ctx context.Context, js jetstream.JetStream, name, subjectPrefix string) (created bool, err error) {
	_, err = js.Stream(ctx, name)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, fmt.Errorf("jetstream stream %s: %w", name, err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{subjectPrefix + ">"},
		Duplicates: 10 * time.Minute,
		MaxAge:     24 * time.Hour,
		Storage:    jetstream.FileStorage,
	})
	if err != nil {
		return false, fmt.Errorf("create jetstream stream %s: %w", name, err)
	}
	return true, nil
}
