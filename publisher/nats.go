package publisher

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cachewire/invalidator/cdc"
	"github.com/cachewire/invalidator/router"
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
	resume  acked // how far the last batch got, when it failed
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

// jsWindow is how many JetStream publishes are in flight at once: the
// client's own limit is 4,000, and a window is the unit that a timeout
// bounds and that a retry does not send again.
const jsWindow = 1024

// Publish sends every message of the batch and waits until NATS has them.
// It returns how many it sent. A failed batch is sent again whole on core
// NATS; on JetStream the windows already acknowledged are skipped when the
// same batch comes back (the Nats-Msg-Id would drop them anyway, but core
// subscribers of the stream's subjects would see them twice), and the
// timeout bounds each window's acks, not the whole batch: a transaction of
// a million rows is acknowledged in parts, each in time.
func (s *NATSSink) Publish(ctx context.Context, batch []Applied) (int, error) {
	if s.js == nil {
		return s.publishCore(ctx, batch)
	}
	return s.publishJetStream(ctx, batch)
}

func (s *NATSSink) publishCore(ctx context.Context, batch []Applied) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	n := 0
	for c, m := range withSubjects(batch) {
		// core publish copies the payload into the connection's buffer
		s.buf = AppendMessage(s.buf[:0], &m, c.CommitLSN, c.Xid, c.CommitTime)
		if err := s.nc.Publish(m.Subject, s.buf); err != nil {
			return n, fmt.Errorf("nats publish %s: %w", m.Subject, err)
		}
		n++
	}
	if err := s.nc.FlushWithContext(ctx); err != nil {
		return n, fmt.Errorf("nats flush: %w", err)
	}
	return n, nil
}

// withSubjects yields the batch's messages that have a NATS subject, each
// with its transaction.
func withSubjects(batch []Applied) iter.Seq2[*Applied, router.Message] {
	return func(yield func(*Applied, router.Message) bool) {
		for k := range batch {
			res := batch[k].Txn.Result()
			for i := range res.NumMessages() {
				if m := res.Message(i); m.Subject != "" && !yield(&batch[k], m) {
					return
				}
			}
		}
	}
}

// acked is how far a failed JetStream batch got: the batch, known by its
// first and last commit positions and its length, and how many of its
// messages were acknowledged.
type acked struct {
	first, last cdc.LSN
	txns, msgs  int
}

func (s *NATSSink) publishJetStream(ctx context.Context, batch []Applied) (n int, err error) {
	if len(batch) == 0 {
		return 0, nil
	}
	id := acked{first: batch[0].CommitLSN, last: batch[len(batch)-1].CommitLSN, txns: len(batch)}
	skip := 0
	if r := s.resume; r.txns > 0 && r.first == id.first && r.last == id.last && r.txns == id.txns {
		skip = r.msgs
	}
	done := 0 // messages of the batch acknowledged
	defer func() {
		s.resume = acked{}
		if err != nil {
			id.msgs = done
			s.resume = id
		}
	}()
	s.futures = s.futures[:0]
	for c, m := range withSubjects(batch) {
		if n++; n <= skip {
			done = n
			continue
		}
		// an async publish may be retried by the client: its own payload
		payload := AppendMessage(nil, &m, c.CommitLSN, c.Xid, c.CommitTime)
		msg := &nats.Msg{Subject: m.Subject, Data: payload, Header: nats.Header{}}
		f, err := s.js.PublishMsgAsync(msg, jetstream.WithMsgID(MsgID(s.slot, c.CommitLSN, m.Subject)))
		if err != nil {
			return n, fmt.Errorf("jetstream publish %s: %w", m.Subject, err)
		}
		s.futures = append(s.futures, f)
		if len(s.futures) == jsWindow {
			if err := s.waitAcks(ctx); err != nil {
				return n, err
			}
			done = n
		}
	}
	if err := s.waitAcks(ctx); err != nil {
		return n, err
	}
	return n, nil
}

// waitAcks waits, within the sink's timeout, for every publish in flight
// to be acknowledged, and forgets them.
func (s *NATSSink) waitAcks(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	defer func() {
		clear(s.futures)
		s.futures = s.futures[:0]
	}()
	for _, f := range s.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("jetstream ack %s: %w", f.Msg().Subject, err)
		case <-ctx.Done():
			return fmt.Errorf("jetstream ack %s: %w", f.Msg().Subject, ctx.Err())
		}
	}
	return nil
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
