package cdc

import (
	"fmt"
	"time"
)

// Decoder turns a sequence of pgoutput (protocol version 2) messages into
// committed transactions. It follows relation descriptions as they change,
// keeps one Txn per streamed in-progress transaction, and drops aborted
// transactions and subtransactions. It is not safe for concurrent use.
type Decoder[T Txn] struct {
	newTxn func(xid uint32) T
	// skipThrough: transactions committed at or before it were already handed
	// on (before a reconnect) and are skipped when the server sends them again.
	skipThrough LSN

	rels relationCache

	// the transaction between Begin and Commit (not streamed)
	inTxn      bool
	skipping   bool
	txn        T
	xid        uint32
	finalLSN   LSN // its commit LSN and time, from Begin
	commitTime time.Time

	// streamed transactions, by top-level xid
	inStream  bool
	streamXid uint32
	streams   map[uint32]T

	change    Change
	oldBuf    Tuple
	newBuf    Tuple
	truncated []*Relation

	// OnMessage, when set, receives logical decoding messages
	// (pg_logical_emit_message); content aliases the receive buffer.
	OnMessage func(transactional bool, lsn LSN, prefix string, content []byte)
	// OnTxnMessage, when set, is also given each transactional message
	// with the transaction it belongs to (none of one already handed on).
	OnTxnMessage func(txn T, prefix string, content []byte)
	// OnUnknownRelation, when set, is told about changes that name a
	// relation never described; such changes are skipped.
	OnUnknownRelation func(relID uint32)
	// OnRelation, when set, is given each relation description before
	// changes use it (to fill its Routes); an error fails Decode.
	OnRelation func(*Relation) error
	// Early, when set, is asked after each row change of a transaction
	// that is not streamed whether part of it can be handed on before its
	// Commit arrives; when it returns ok, Decode returns that part marked
	// Early. Such a transaction is committed before the server sends its
	// Begin (Begin carries its commit LSN and time), so what depends only
	// on committed data (deleting its keys) need not wait for the last of
	// a large transaction's changes. Streamed transactions may still
	// abort and are never split. Early is first asked at Begin, before any
	// change, so that a T knows from the start that it arrives committed
	// (router.Txn then keeps deleting exact keys past its bound, ADR 27).
	Early func(T) (T, bool)
}

// NewDecoder returns a Decoder that creates one T per transaction.
func NewDecoder[T Txn](newTxn func(xid uint32) T) *Decoder[T] {
	return &Decoder[T]{newTxn: newTxn, rels: relationCache{}, streams: map[uint32]T{}}
}

// SkipThrough makes the decoder ignore transactions whose commit LSN is at
// or before lsn: they were handed on already.
func (d *Decoder[T]) SkipThrough(lsn LSN) { d.skipThrough = lsn }

// Busy reports whether a transaction is partly received: a regular one
// between Begin and Commit, or a streamed one not yet committed or aborted.
func (d *Decoder[T]) Busy() bool { return d.inTxn || d.inStream || len(d.streams) > 0 }

// Receiving reports whether a transaction's changes are arriving: between
// Begin and Commit, or between Stream Start and Stream Stop.
func (d *Decoder[T]) Receiving() bool { return d.inTxn || d.inStream }

// OpenStreams returns how many streamed transactions are in progress.
func (d *Decoder[T]) OpenStreams() int { return len(d.streams) }

// Relation returns the current description of a relation id, or nil.
func (d *Decoder[T]) Relation(id uint32) *Relation { return d.rels[id] }

// Decode handles one pgoutput message. When the message completes a
// transaction, it returns that transaction and ok.
func (d *Decoder[T]) Decode(msg []byte) (c Committed[T], ok bool, err error) {
	if len(msg) == 0 {
		return c, false, fmt.Errorf("%w: empty", ErrMalformed)
	}
	r := reader{buf: msg[1:]}
	switch kind := msg[0]; kind {
	// Begin and Commit, the messages of every transaction, are decoded
	// here: as methods they cost a call through the generic dictionary
	// and a copy of Committed (BenchmarkDecodeTransaction).
	case 'B':
		finalLSN := LSN(r.u64("begin final lsn"))
		ts := r.time("begin commit time")
		xid := r.u32("begin xid")
		if r.err != nil {
			return c, false, r.err
		}
		d.inTxn, d.xid, d.finalLSN, d.commitTime = true, xid, finalLSN, ts
		d.skipping = finalLSN != 0 && finalLSN <= d.skipThrough
		if !d.skipping {
			d.txn = d.newTxn(xid)
			if d.Early != nil {
				// tells the transaction that it arrives committed; it
				// holds nothing to hand on yet
				d.Early(d.txn)
			}
		}
	case 'C':
		commitLSN, endLSN, ts := r.commit(false)
		if r.err != nil {
			return c, false, r.err
		}
		if !d.inTxn {
			return c, false, fmt.Errorf("%w: commit without begin", ErrMalformed)
		}
		c = Committed[T]{Txn: d.txn, Xid: d.xid, CommitLSN: commitLSN, EndLSN: endLSN, CommitTime: ts}
		ok = !d.skipping
		if ok {
			c.Txn.Commit()
		}
		var zero T
		d.inTxn, d.skipping, d.txn = false, false, zero
		return c, ok, nil
	case 'S':
		return c, false, d.streamStart(&r)
	case 'E':
		d.inStream = false
	case 'c':
		return d.streamCommit(&r)
	case 'A':
		return c, false, d.streamAbort(&r)
	case 'R':
		return c, false, d.relation(&r)
	case 'I', 'U', 'D':
		if err := d.rowChange(kind, &r); err != nil {
			return c, false, err
		}
		return d.early()
	case 'T':
		return c, false, d.truncate(&r)
	case 'M':
		return c, false, d.message(&r)
	case 'Y', 'O':
		// Type and origin messages carry nothing we need.
	default:
		return c, false, fmt.Errorf("%w: unknown message type %q", ErrMalformed, kind)
	}
	return c, false, nil
}

// streamStart begins a block of a streamed transaction's changes, the
// first block creating its Txn.
func (d *Decoder[T]) streamStart(r *reader) error {
	xid := r.u32("stream start xid")
	r.u8("stream start first segment")
	if r.err != nil {
		return r.err
	}
	d.inStream, d.streamXid = true, xid
	if _, exists := d.streams[xid]; !exists {
		d.streams[xid] = d.newTxn(xid)
	}
	return nil
}

// streamCommit hands on a streamed transaction, unless it was streamed
// before this connection started.
func (d *Decoder[T]) streamCommit(r *reader) (c Committed[T], ok bool, err error) {
	xid := r.u32("stream commit xid")
	commitLSN, endLSN, ts := r.commit(true)
	if r.err != nil {
		return c, false, r.err
	}
	txn, exists := d.streams[xid]
	delete(d.streams, xid)
	if !exists || commitLSN <= d.skipThrough {
		// Streamed before our (re)connect started: the server only
		// streams from the confirmed position, so a commit of a
		// stream we never saw begin must be one we handed on already.
		return c, false, nil
	}
	txn.Commit()
	return Committed[T]{Txn: txn, Xid: xid, CommitLSN: commitLSN, EndLSN: endLSN, CommitTime: ts}, true, nil
}

// streamAbort drops a streamed transaction, or one of its
// subtransactions.
func (d *Decoder[T]) streamAbort(r *reader) error {
	xid := r.u32("stream abort xid")
	subxid := r.u32("stream abort subxid")
	if r.err != nil {
		return r.err
	}
	if xid == subxid {
		delete(d.streams, xid)
	} else if txn, exists := d.streams[xid]; exists {
		txn.DiscardSub(subxid)
	}
	return nil
}

// relation records a relation description for the changes that follow.
func (d *Decoder[T]) relation(r *reader) error {
	d.streamedXid(r)
	rel := r.relation()
	if r.err != nil {
		return r.err
	}
	if d.OnRelation != nil {
		if err := d.OnRelation(rel); err != nil {
			return err
		}
	}
	d.rels.put(rel)
	return nil
}

// message passes a logical decoding message to OnMessage and, when it is
// transactional, to OnTxnMessage with its transaction.
func (d *Decoder[T]) message(r *reader) error {
	d.streamedXid(r)
	flags := r.u8("message flags")
	lsn := LSN(r.u64("message lsn"))
	prefix := r.cstring("message prefix")
	n := r.u32("message length")
	content := r.bytes(int(n), "message content")
	if r.err != nil {
		return r.err
	}
	if d.OnMessage != nil {
		d.OnMessage(flags&1 != 0, lsn, prefix, content)
	}
	if txn, ok := d.target(); ok && flags&1 != 0 && d.OnTxnMessage != nil {
		d.OnTxnMessage(txn, prefix, content)
	}
	return nil
}

// early splits off what the transaction being received can hand on
// before its Commit, if anything (see Early).
func (d *Decoder[T]) early() (c Committed[T], ok bool, err error) {
	if d.Early == nil || !d.inTxn || d.skipping || d.inStream {
		return c, false, nil
	}
	part, ok := d.Early(d.txn)
	if !ok {
		return c, false, nil
	}
	return Committed[T]{Txn: part, Xid: d.xid, CommitLSN: d.finalLSN, CommitTime: d.commitTime, Early: true}, true, nil
}

// streamedXid reads the xid that prefixes a message inside a stream block.
func (d *Decoder[T]) streamedXid(r *reader) uint32 {
	if !d.inStream {
		return 0
	}
	return r.u32("streamed xid")
}

// target returns the transaction a row change belongs to, if any.
func (d *Decoder[T]) target() (T, bool) {
	if d.inStream {
		t, ok := d.streams[d.streamXid]
		return t, ok
	}
	if d.inTxn && !d.skipping {
		return d.txn, true
	}
	var zero T
	return zero, false
}

func (d *Decoder[T]) rowChange(kind byte, r *reader) error {
	xid := d.streamedXid(r)
	if !d.inStream {
		xid = d.xid
	}
	relID := r.u32("relation id")
	ch := &d.change
	*ch = Change{Xid: xid, Old: d.oldBuf[:0], New: d.newBuf[:0]}
	switch kind {
	case 'I':
		ch.Op = OpInsert
		if t := r.u8("insert tuple kind"); t != 'N' && r.err == nil {
			return fmt.Errorf("%w: insert tuple kind %q", ErrMalformed, t)
		}
		ch.New = r.tuple(ch.New)
	case 'U':
		ch.Op = OpUpdate
		t := r.u8("update tuple kind")
		if t == OldKey || t == OldFull {
			ch.OldKind = t
			ch.Old = r.tuple(ch.Old)
			t = r.u8("update new tuple kind")
		}
		if t != 'N' && r.err == nil {
			return fmt.Errorf("%w: update tuple kind %q", ErrMalformed, t)
		}
		ch.New = r.tuple(ch.New)
	case 'D':
		ch.Op = OpDelete
		t := r.u8("delete tuple kind")
		if t != OldKey && t != OldFull && r.err == nil {
			return fmt.Errorf("%w: delete tuple kind %q", ErrMalformed, t)
		}
		ch.OldKind = t
		ch.Old = r.tuple(ch.Old)
	}
	if r.err != nil {
		return r.err
	}
	// keep the grown buffers for the next change
	d.oldBuf, d.newBuf = ch.Old[:0], ch.New[:0]
	rel := d.rels[relID]
	if rel == nil {
		if d.OnUnknownRelation != nil {
			d.OnUnknownRelation(relID)
		}
		return nil
	}
	ch.Rel = rel
	if t, ok := d.target(); ok {
		t.Add(ch)
	}
	return nil
}

func (d *Decoder[T]) truncate(r *reader) error {
	xid := d.streamedXid(r)
	if !d.inStream {
		xid = d.xid
	}
	n := r.u32("truncate relation count")
	r.u8("truncate options")
	if r.err != nil {
		return r.err
	}
	d.truncated = d.truncated[:0]
	for i := uint32(0); i < n && r.err == nil; i++ {
		id := r.u32("truncate relation id")
		if rel := d.rels[id]; rel != nil {
			d.truncated = append(d.truncated, rel)
		} else if r.err == nil && d.OnUnknownRelation != nil {
			d.OnUnknownRelation(id)
		}
	}
	if r.err != nil {
		return r.err
	}
	d.change = Change{Op: OpTruncate, Xid: xid, Truncated: d.truncated}
	if t, ok := d.target(); ok {
		t.Add(&d.change)
	}
	return nil
}
