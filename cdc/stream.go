package cdc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"go.uber.org/zap"

	"github.com/cachewire/invalidator/internal/backoff"
	"github.com/cachewire/invalidator/internal/sockio"
)

// Role is what a Stream is doing with its slot.
type Role int32

// Roles of a Stream.
const (
	RoleStarting Role = iota // not connected yet, or reconnecting
	RoleStandby              // the slot is in use by another consumer: waiting for it
	RoleActive               // streaming from the slot
)

// String returns the role's name as /readyz and /status report it.
func (r Role) String() string {
	switch r {
	case RoleStandby:
		return "standby"
	case RoleActive:
		return "active"
	}
	return "starting"
}

// ErrFatal marks errors that retrying cannot mend (a missing slot when the
// daemon may not create it, a slot of another plugin...).
var ErrFatal = errors.New("fatal")

// ErrSlotLost reports a slot that can no longer deliver every change since
// it was last read: invalidated (wal_status lost, WAL removed) or dropped
// after the daemon had used it. Changes may have been missed.
var ErrSlotLost = errors.New("replication slot lost")

// StreamConfig says where and how to stream.
type StreamConfig struct {
	// URL is the PostgreSQL URL; replication=database is added.
	URL         string
	Slot        string
	Publication string
	// Create the publication (for Tables) and the slot when missing.
	Create bool
	Tables []string
	// SlotFailover is INVALIDATOR_SLOT_FAILOVER ("auto", "true", "false"):
	// whether a slot the stream creates is a failover slot (see
	// FailoverSlot).
	SlotFailover string
	// StatusInterval bounds the time between standby status updates when
	// nothing changes (default 10s).
	StatusInterval time.Duration
	// AckDelay is how soon a newly applied position is confirmed (default 100ms).
	AckDelay time.Duration
	// Backoff bounds for reconnecting (defaults 250ms and 15s); a standby
	// retries every StandbyPoll (default 1s).
	MinBackoff, MaxBackoff time.Duration
	StandbyPoll            time.Duration
	// DrainTimeout bounds how long a stopping stream waits for what it
	// handed on to be applied before its last confirmation (default 10s).
	DrainTimeout time.Duration
	// ExpectSlot says the slot existed before (the daemon has streamed from
	// it): finding it missing then means it was lost, not that this is a
	// first start.
	ExpectSlot bool
}

// Observer is told about the stream's progress; every method must be cheap
// and safe for concurrent use. Nil-safe defaults are used when unset.
type Observer interface {
	RoleChanged(Role)
	// Position reports the confirmed position and the server's WAL end.
	Position(confirmed, serverEnd LSN)
	StreamError(kind string)
}

type nopObserver struct{}

func (nopObserver) RoleChanged(Role)   {}
func (nopObserver) Position(LSN, LSN)  {}
func (nopObserver) StreamError(string) {}

// Stream reads a logical replication slot and hands committed transactions
// to out in commit order (a large one preceded by its early parts, see
// Early). It confirms to PostgreSQL only positions reported
// through Confirm: what has been applied, never what was merely received.
type Stream[T Txn] struct {
	cfg    StreamConfig
	log    *zap.Logger
	obs    Observer
	out    chan<- Committed[T]
	newTxn func(xid uint32) T

	applied  atomic.Uint64 // end LSN of the last applied transaction
	progress chan struct{} // signalled by Confirm
	role     atomic.Int32

	// loop state, owned by Run
	routesSeen      map[uint32][]string // every route a relation was found to have, see routeLookup
	submittedCommit LSN                 // commit LSN of the last transaction handed on
	submittedEnd    LSN                 // its end LSN
	confirmedSent   LSN                 // last flush position sent to the server
	serverEnd       LSN                 // latest keepalive position with nothing in flight
	serverWAL       LSN                 // latest WAL end the server reported
	system          string              // system id and timeline of the last session's server

	busyRate float64 // see busyRate; tests lower it

	// OnMessage receives logical decoding messages, see Decoder.OnMessage.
	OnMessage func(transactional bool, lsn LSN, prefix string, content []byte)
	// Early splits off the part of a large transaction that can be handed
	// on before its Commit arrives, see Decoder.Early. Such parts go to out
	// marked Early, before the transaction itself, and confirm nothing.
	Early func(T) (T, bool)
	// Flush, when set, is given the tables a flush request to this
	// stream's slot names (RequestFlush, ADR 16), with the transaction
	// that carried it: their rules' wide form is to be deleted with it.
	Flush func(txn T, tables []string)
}

// NewStream returns a Stream that creates one T per transaction with newTxn
// and sends committed transactions to out. obs may be nil.
func NewStream[T Txn](cfg StreamConfig, log *zap.Logger, obs Observer, newTxn func(xid uint32) T, out chan<- Committed[T]) *Stream[T] {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 10 * time.Second
	}
	if cfg.AckDelay <= 0 {
		cfg.AckDelay = 100 * time.Millisecond
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 250 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 15 * time.Second
	}
	if cfg.StandbyPoll <= 0 {
		cfg.StandbyPoll = time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if obs == nil {
		obs = nopObserver{}
	}
	return &Stream[T]{cfg: cfg, log: log, obs: obs, out: out, newTxn: newTxn, progress: make(chan struct{}, 1), busyRate: busyRate}
}

// Confirm records that every transaction handed on with an end LSN up to
// lsn has been applied. Safe for concurrent use.
func (s *Stream[T]) Confirm(lsn LSN) {
	for {
		cur := s.applied.Load()
		if uint64(lsn) <= cur {
			return
		}
		if s.applied.CompareAndSwap(cur, uint64(lsn)) {
			select {
			case s.progress <- struct{}{}:
			default:
			}
			return
		}
	}
}

// Applied returns the position of the last applied transaction.
func (s *Stream[T]) Applied() LSN { return LSN(s.applied.Load()) }

// Role returns what the stream is doing now.
func (s *Stream[T]) Role() Role { return Role(s.role.Load()) }

func (s *Stream[T]) setRole(r Role) {
	if Role(s.role.Swap(int32(r))) != r {
		s.obs.RoleChanged(r)
	}
}

// Run streams until ctx is done or a fatal error, reconnecting with
// exponential backoff after any other failure. It returns nil when ctx ends.
func (s *Stream[T]) Run(ctx context.Context) error {
	defer s.setRole(RoleStarting)
	retry := backoff.Backoff{Min: s.cfg.MinBackoff, Max: s.cfg.MaxBackoff}
	// a fixed pause, jittered all the same: standbys must not poll in step
	standby := backoff.Backoff{Min: s.cfg.StandbyPoll, Max: s.cfg.StandbyPoll}
	var lastLogged time.Time
	for {
		start := time.Now()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrFatal) || errors.Is(err, ErrSlotLost) {
			return err
		}
		var pause time.Duration
		if isSlotInUse(err) {
			if s.Role() != RoleStandby {
				s.log.Info("slot is in use by another consumer: waiting as standby", zap.String("slot", s.cfg.Slot))
			}
			s.setRole(RoleStandby)
			pause = standby.Next()
		} else {
			s.setRole(RoleStarting)
			s.obs.StreamError(errorKind(err))
			if time.Since(start) > time.Minute {
				retry.Reset() // it worked for a while: start over
			}
			pause = retry.Next()
			if time.Since(lastLogged) > 10*time.Second || retry.Step() < s.cfg.MaxBackoff {
				s.log.Warn("replication stream failed; reconnecting", zap.Error(err), zap.Duration("backoff", retry.Step()))
				lastLogged = time.Now()
			}
		}
		if backoff.Sleep(ctx, pause) != nil {
			return nil
		}
	}
}

func isSlotInUse(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006"
}

func errorKind(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return "postgres"
	}
	return "connection"
}

// serverMajor returns the major version from server_version ("15.18 (Debian
// 15.18-0+deb12u1)", "9.6.24"), or 0.
func serverMajor(version string) int {
	end := 0
	for end < len(version) && version[end] >= '0' && version[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(version[:end])
	return n
}

// Rebase waits until every transaction handed on has been applied (or ctx
// ends; early parts of one cut off are not waited for) and then forgets
// every position: the next session starts from the slot
// alone. For a recreated slot or another server, whose positions have no
// relation to the old ones. Call it only while Run is not running.
func (s *Stream[T]) Rebase(ctx context.Context) error {
	for s.Applied() < s.submittedEnd {
		select {
		case <-s.progress:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.submittedCommit, s.submittedEnd, s.confirmedSent = 0, 0, 0
	s.serverEnd, s.serverWAL = 0, 0
	s.applied.Store(0)
	return nil
}

// ReplicationURL returns url with replication=database set. The rest of
// the query is kept as written: re-encoding it would turn the %20 of
// options=-c%20name%3Dvalue into a '+', which PostgreSQL receives as is.
func ReplicationURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("postgres URL: %w", err)
	}
	var kept []string
	for _, kv := range strings.Split(u.RawQuery, "&") {
		if k, _, _ := strings.Cut(kv, "="); kv != "" && k != "replication" {
			kept = append(kept, kv)
		}
	}
	u.RawQuery = strings.Join(append(kept, "replication=database"), "&")
	return u.String(), nil
}

// session runs one connection until it fails or ctx ends.
func (s *Stream[T]) session(ctx context.Context) (err error) {
	connURL, err := ReplicationURL(s.cfg.URL)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFatal, err)
	}
	connCfg, err := pgconn.ParseConfig(connURL)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	connCfg.BuildFrontend = bufferedFrontend
	connCfg.DialFunc = sockio.WrapDial(connCfg.DialFunc) // raw socket I/O (ADR 30); TLS goes on top
	conn, err := pgconn.ConnectConfig(ctx, connCfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer CloseConn(ctx, conn)

	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	if system := fmt.Sprintf("%s/%d", sys.SystemID, sys.Timeline); system != s.system {
		if s.system != "" {
			// a failover or another server: positions of the old one mean
			// nothing here, and must never be confirmed to this one
			s.log.Warn("the server changed (failover?): resetting positions", zap.String("was", s.system), zap.String("now", system))
			if err := s.Rebase(ctx); err != nil {
				return err
			}
		}
		s.system = system
	}
	s.serverEnd, s.serverWAL = 0, 0 // learnt again from this session
	if _, err := CheckServer(conn); err != nil {
		return fmt.Errorf("%w: %w", ErrFatal, err)
	}
	if err := s.prepare(ctx, conn); err != nil {
		return err
	}
	args := []string{"publication_names " + QuoteLiteral(s.cfg.Publication), "messages 'true'",
		"proto_version '2'", "streaming 'true'"}
	// Start at 0: the server resumes from the slot's confirmed position.
	if err := pglogrepl.StartReplication(ctx, conn, s.cfg.Slot, 0, pglogrepl.StartReplicationOptions{PluginArgs: args}); err != nil {
		return s.classify(fmt.Errorf("start replication on slot %q: %w", s.cfg.Slot, err))
	}
	s.cfg.ExpectSlot = true // from now on, a missing slot is a lost one
	s.setRole(RoleActive)
	s.log.Info("streaming", zap.String("slot", s.cfg.Slot), zap.String("publication", s.cfg.Publication),
		zap.Stringer("resume_after", s.submittedCommit))

	dec := NewDecoder(s.newTxn)
	dec.SkipThrough(s.submittedCommit)
	dec.OnMessage = s.OnMessage
	dec.Early = s.Early
	dec.OnTxnMessage = func(txn T, prefix string, content []byte) {
		if tables, ok := FlushRequest(s.cfg.Slot, prefix, content); ok && s.Flush != nil {
			s.Flush(txn, tables)
		}
	}
	if s.routesSeen == nil {
		s.routesSeen = map[uint32][]string{}
	}
	routes := &routeLookup{url: s.cfg.URL, seen: s.routesSeen}
	defer routes.close(ctx)
	dec.OnRelation = func(rel *Relation) error { return routes.fill(ctx, rel) }
	dec.OnUnknownRelation = func(id uint32) {
		s.obs.StreamError("unknown_relation")
		s.log.Warn("change for a relation never described; skipped", zap.Uint32("relation_id", id))
	}

	netConn := conn.Conn()
	stop := context.AfterFunc(ctx, func() { _ = netConn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err = s.loop(ctx, conn, dec)
	if ctx.Err() != nil {
		s.drain(conn, dec)
		return ctx.Err()
	}
	return s.classify(err)
}

// classify turns the server's ways of saying the slot is gone or unusable
// into ErrSlotLost.
func (s *Stream[T]) classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch {
	case pgErr.Code == "42704" && s.cfg.ExpectSlot: // undefined_object: the slot was dropped
		return fmt.Errorf("%w: %q was dropped: %w", ErrSlotLost, s.cfg.Slot, err)
	case pgErr.Code == "55000" && strings.Contains(pgErr.Message, "can no longer get changes"):
		return fmt.Errorf("%w: %q was invalidated: %w", ErrSlotLost, s.cfg.Slot, err)
	}
	return err
}

// drain waits (bounded) until everything handed on is applied, then sends
// the last confirmation: a clean stop re-sends nothing it does not have to.
func (s *Stream[T]) drain(conn *pgconn.PgConn, dec *Decoder[T]) {
	timer := time.NewTimer(s.cfg.DrainTimeout)
	defer timer.Stop()
	for s.Applied() < s.submittedEnd {
		select {
		case <-s.progress:
		case <-timer.C:
			s.log.Warn("stopping before every received transaction was applied; they will be re-sent on restart",
				zap.Stringer("applied", s.Applied()), zap.Stringer("received", s.submittedEnd))
			_ = s.sendStatus(conn, dec, true)
			return
		}
	}
	_ = s.sendStatus(conn, dec, true)
	s.log.Info("stream drained", zap.Stringer("confirmed", s.confirmedSent))
}

func (s *Stream[T]) loop(ctx context.Context, conn *pgconn.PgConn, dec *Decoder[T]) error {
	netConn := conn.Conn()
	gulp := gulper{conn: netConn, log: s.log, busy: busyMeter{rate: s.busyRate}}

	nextStatus := time.Now().Add(s.cfg.StatusInterval)
	lastStatus := time.Time{}
	var readDeadline time.Time // the connection's, as last set
	for {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := time.Now()
		if err := gulp.tick(now); err != nil {
			return err
		}
		want := s.confirmable(dec)
		if now.After(nextStatus) || (want > s.confirmedSent && now.Sub(lastStatus) >= s.cfg.AckDelay) {
			if err := s.sendStatus(conn, dec, false); err != nil {
				return err
			}
			lastStatus, nextStatus = now, now.Add(s.cfg.StatusInterval)
		}
		deadline := nextStatus
		if s.submittedEnd > s.confirmedSent || want > s.confirmedSent {
			deadline = now.Add(s.cfg.AckDelay) // something to confirm soon
		}
		if g := now.Add(gulpWait); gulp.on && g.Before(deadline) {
			deadline = g
		}
		// Waking before the deadline is harmless (the loop re-checks), so the
		// deadline is only moved when it is already past or too late: not
		// for each of the thousands of messages a second.
		if !readDeadline.After(now) || readDeadline.After(deadline) {
			if err := netConn.SetReadDeadline(deadline); err != nil {
				return fmt.Errorf("set read deadline: %w", err)
			}
			readDeadline = deadline
		}
		raw, err := conn.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch msg := raw.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				replied, err := s.keepalive(conn, dec, msg.Data[1:])
				if err != nil {
					return err
				}
				if replied {
					lastStatus, nextStatus = time.Now(), time.Now().Add(s.cfg.StatusInterval)
				}
			case pglogrepl.XLogDataByteID:
				if err := s.xlogData(ctx, conn, dec, &gulp, now, msg.Data); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(msg)
		case *pgproto3.CopyDone:
			return errors.New("server ended the replication stream")
		}
	}
}

// keepalive handles a primary keepalive message (data after its type
// byte): it learns the server's position and replies when asked; replied
// says it sent a status.
func (s *Stream[T]) keepalive(conn *pgconn.PgConn, dec *Decoder[T], data []byte) (replied bool, err error) {
	ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data)
	if err != nil {
		return false, fmt.Errorf("keepalive: %w", err)
	}
	if !dec.Busy() && ka.ServerWALEnd > s.serverEnd {
		s.serverEnd = ka.ServerWALEnd
	}
	if ka.ServerWALEnd > s.serverWAL {
		s.serverWAL = ka.ServerWALEnd
		s.obs.Position(s.confirmedSent, s.serverWAL)
	}
	if !ka.ReplyRequested {
		return false, nil
	}
	if err := s.sendStatus(conn, dec, false); err != nil {
		return false, err
	}
	return true, nil
}

// xlogData decodes one XLogData message (data with its type byte) and hands
// on a transaction it completes.
func (s *Stream[T]) xlogData(ctx context.Context, conn *pgconn.PgConn, dec *Decoder[T], gulp *gulper, now time.Time, data []byte) error {
	// Parsed here rather than by pglogrepl.ParseXLogData, which also
	// converts the server time we do not use: about 40 ns against 1.5 ns a
	// message, on the path of every change.
	if len(data) < 25 {
		return fmt.Errorf("xlogdata: %w: short header", ErrMalformed)
	}
	if end := LSN(binary.BigEndian.Uint64(data[9:17])); end > s.serverWAL {
		s.serverWAL = end
	}
	c, ok, err := dec.Decode(data[25:])
	if err != nil {
		return fmt.Errorf("decode at %s: %w", LSN(binary.BigEndian.Uint64(data[1:9])), err)
	}
	if err := gulp.update(now, dec.Receiving(), ok && !c.Early); err != nil {
		return err
	}
	if !ok {
		return nil
	}
	if c.Early {
		s.log.Debug("handing on part of a transaction before its commit arrives",
			zap.Uint32("xid", c.Xid), zap.Stringer("commit_lsn", c.CommitLSN))
	}
	return s.handOn(ctx, conn, dec, c)
}

// streamReadBuffer is the read buffer of a replication connection.
// pgproto3 reads into its own 8 KiB buffer, often into just the part of it
// left after the last message, so a busy stream took several small reads
// (each a system call that also sends the walsender an ACK) for what had
// arrived at once; buffered, a gulp is read in one.
const streamReadBuffer = 64 << 10

// bufferedFrontend is pgproto3.NewFrontend reading through a buffer of
// streamReadBuffer.
func bufferedFrontend(r io.Reader, w io.Writer) *pgproto3.Frontend {
	return pgproto3.NewFrontend(bufio.NewReaderSize(r, streamReadBuffer), w)
}

// prepare creates what is missing (when allowed) and checks the slot.
func (s *Stream[T]) prepare(ctx context.Context, conn *pgconn.PgConn) error {
	st, err := Slot(ctx, conn, s.cfg.Slot)
	if err != nil {
		return err
	}
	if st.Exists && st.WALStatus == "lost" {
		return fmt.Errorf("%w: %q has wal_status lost (its WAL was removed, see max_slot_wal_keep_size)", ErrSlotLost, s.cfg.Slot)
	}
	if !st.Exists && s.cfg.ExpectSlot {
		return fmt.Errorf("%w: %q no longer exists", ErrSlotLost, s.cfg.Slot)
	}
	if s.cfg.Create {
		// what was committed to a table added while the slot existed was
		// not published: the add asks this stream to flush its rules (ADR 16)
		flushSlot := ""
		if st.Exists {
			flushSlot = s.cfg.Slot
		}
		created, added, err := EnsurePublication(ctx, conn, s.cfg.Publication, s.cfg.Tables, flushSlot)
		if err != nil {
			return err
		}
		if created {
			s.log.Info("created publication", zap.String("publication", s.cfg.Publication), zap.Strings("tables", s.cfg.Tables))
		}
		if len(added) > 0 {
			s.log.Info("added tables to publication", zap.String("publication", s.cfg.Publication), zap.Strings("tables", added))
		}
		created, failover, err := EnsureSlotMode(ctx, conn, s.cfg.Slot, s.cfg.SlotFailover)
		if errors.Is(err, ErrUnsupported) {
			return fmt.Errorf("%w: %w", ErrFatal, err)
		}
		if err != nil {
			return err
		}
		if created {
			s.log.Info("created replication slot", zap.String("slot", s.cfg.Slot), zap.Bool("failover", failover))
		}
		return nil
	}
	if !st.Exists {
		return fmt.Errorf("%w: replication slot %q does not exist and INVALIDATOR_CREATE_SLOT is false: run `invalidator setup`", ErrFatal, s.cfg.Slot)
	}
	return nil
}

// confirmable is the position that may be confirmed now: the applied
// position, or the server's position when nothing is received but unapplied.
func (s *Stream[T]) confirmable(dec *Decoder[T]) LSN {
	applied := LSN(s.applied.Load())
	pos := applied
	if applied >= s.submittedEnd && !dec.Busy() && s.serverEnd > pos {
		pos = s.serverEnd
	}
	if pos < s.confirmedSent {
		pos = s.confirmedSent
	}
	if s.serverWAL != 0 && pos > s.serverWAL {
		pos = s.serverWAL // never ahead of this server's WAL
	}
	return pos
}

func (s *Stream[T]) sendStatus(conn *pgconn.PgConn, dec *Decoder[T], final bool) error {
	pos := s.confirmable(dec)
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pos, WALFlushPosition: pos, WALApplyPosition: pos,
	})
	if err != nil {
		if final {
			return nil
		}
		return fmt.Errorf("send standby status: %w", err)
	}
	if pos > s.confirmedSent {
		s.confirmedSent = pos
	}
	s.obs.Position(pos, max(s.serverWAL, pos))
	return nil
}

// handOn sends a committed transaction on, blocking while the consumer is
// behind (backpressure) but keeping the connection alive meanwhile.
func (s *Stream[T]) handOn(ctx context.Context, conn *pgconn.PgConn, dec *Decoder[T], c Committed[T]) error {
	select {
	case s.out <- c:
	default:
		tick := time.NewTicker(s.cfg.AckDelay)
		defer tick.Stop()
		lastStatus := time.Now()
	wait:
		for {
			select {
			case s.out <- c:
				break wait
			case <-ctx.Done():
				return ctx.Err()
			case now := <-tick.C:
				if s.confirmable(dec) > s.confirmedSent || now.Sub(lastStatus) >= s.cfg.StatusInterval/2 {
					if err := s.sendStatus(conn, dec, false); err != nil {
						return err
					}
					lastStatus = now
				}
			}
		}
	}
	if !c.Early {
		s.submittedCommit, s.submittedEnd = c.CommitLSN, c.EndLSN
	}
	return nil
}
