// Package cdc reads PostgreSQL logical replication (pgoutput) and turns it
// into committed transactions of row changes.
package cdc

import "time"

// Op is the kind of a row change.
type Op uint8

// The row operations pgoutput reports.
const (
	OpInsert Op = iota + 1
	OpUpdate
	OpDelete
	OpTruncate
)

// String returns the lower-case name used in messages and metrics.
func (o Op) String() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpTruncate:
		return "truncate"
	}
	return "unknown"
}

// ParseOp is the inverse of Op.String.
func ParseOp(s string) (Op, bool) {
	for o := OpInsert; o <= OpTruncate; o++ {
		if o.String() == s {
			return o, true
		}
	}
	return 0, false
}

// Kinds of Datum, as pgoutput encodes them.
const (
	DatumNull      byte = 'n' // SQL NULL
	DatumUnchanged byte = 'u' // unchanged TOASTed value: not sent
	DatumText      byte = 't' // text representation in Data
	DatumBinary    byte = 'b' // binary representation in Data
)

// Datum is one column value of a row image. Data aliases the receive buffer
// and is valid only while the Change it belongs to is being handled.
type Datum struct {
	Kind byte
	Data []byte
}

// Present reports whether the datum carries a value (text or binary).
func (d Datum) Present() bool { return d.Kind == DatumText || d.Kind == DatumBinary }

// Tuple is a row image, one Datum per column of the relation in column order.
type Tuple []Datum

// Image kinds of the old row of an UPDATE or DELETE.
const (
	OldNone byte = 0   // no old image (UPDATE that did not change the replica identity)
	OldKey  byte = 'K' // replica identity columns only, others NULL
	OldFull byte = 'O' // the whole old row (REPLICA IDENTITY FULL)
)

// Change is one row change of a transaction. A Change and everything it
// points to is reused by the decoder: consumers copy what they keep.
type Change struct {
	Op  Op
	Xid uint32 // the (sub)transaction that made the change when streamed, else the transaction
	Rel *Relation
	// OldKind tells what Old holds (OldNone, OldKey or OldFull).
	OldKind byte
	Old     Tuple
	New     Tuple
	// Truncated lists the relations of a TRUNCATE (Rel is nil then).
	Truncated []*Relation
}

// Committed is a transaction that PostgreSQL has committed, with the
// accumulated changes in Txn.
type Committed[T Txn] struct {
	Txn        T
	Xid        uint32
	CommitLSN  LSN // position of the commit record
	EndLSN     LSN // end of the commit record: the position to confirm once applied
	CommitTime time.Time
	// Early marks a head start: part of a transaction that has committed
	// but is still arriving (see Decoder.Early). Its Txn is what was split
	// off, its EndLSN is zero (there is nothing to confirm yet) and the
	// rest of the transaction follows, complete, as an ordinary Committed.
	Early bool
}

// Txn accumulates the changes of one transaction until it commits.
type Txn interface {
	// Add takes one change; c is only valid during the call.
	Add(c *Change)
	// DiscardSub forgets the changes of an aborted subtransaction.
	DiscardSub(subxid uint32)
	// Commit is called once the transaction has committed, before it is
	// handed on: the place to finish and shed accumulation state.
	Commit()
}
